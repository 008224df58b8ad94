//! SigLIP towers against transformers 4.57.6 (`siglip_vision`, `siglip_full`, `llava`).

mod common;

use common::{check, reference, tensor};
use vlm_hf::{read_config, WeightStore};
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};
use vlm_vision::{
    read_preprocessing, FeatureSelection, SelectStrategy, SiglipVisionConfig, SiglipVisionTower,
    VisionEncoder,
};

fn tower(name: &str, layer: i64, strategy: SelectStrategy) -> SiglipVisionTower<TestBackend> {
    let selection = FeatureSelection { layer, strategy };
    SiglipVisionTower::load(fixture(name), selection, &device()).expect("load SigLIP tower")
}

fn matches_every_output(name: &str) {
    let reference = reference(name);
    let pixels = tensor::<4>(&reference, "pixel_values");
    let out = tower(name, -1, SelectStrategy::Full)
        .outputs(pixels)
        .expect("forward");
    assert_eq!(out.hidden_states.len(), 4, "embeddings + 3 layers");
    for (i, state) in out.hidden_states.iter().enumerate() {
        let key = format!("hidden_states.{i}");
        check(&format!("{name} {key}"), state, &tensor(&reference, &key));
    }
    let last = tensor(&reference, "last_hidden_state");
    check(
        &format!("{name} last_hidden_state"),
        &out.last_hidden_state,
        &last,
    );
    assert!(
        out.pooler_output.is_none(),
        "the pooling head is not loaded"
    );
}

#[test]
fn siglip_vision_model_matches_transformers() {
    matches_every_output("siglip_vision");
}

#[test]
fn siglip_model_vision_tower_matches_transformers() {
    matches_every_output("siglip_full");
}

#[test]
fn siglip_as_transformers_5_saves_it_matches_transformers() {
    // transformers 5 saves the vision model without the `vision_model.` key prefix.
    matches_every_output("v5/siglip_vision");
    matches_every_output("v5/siglip_full");
}

#[test]
fn no_token_is_dropped_whatever_the_strategy() {
    let reference = reference("siglip_full");
    let pixels = tensor::<4>(&reference, "pixel_values");
    let expected = tensor(&reference, "hidden_states.2");
    for strategy in [SelectStrategy::Full, SelectStrategy::Default] {
        let tower = tower("siglip_full", -2, strategy);
        assert_eq!((tower.tokens_per_image(), tower.output_dim()), (16, 32));
        let features = tower.forward(pixels.clone()).expect("forward");
        assert_eq!(features.dims(), [2, 16, 32], "{strategy:?}");
        check(
            &format!("siglip_full features(-2, {strategy:?})"),
            &features,
            &expected,
        );
    }
}

#[test]
fn last_layer_features_are_not_post_normalised() {
    let reference = reference("siglip_vision");
    let pixels = tensor::<4>(&reference, "pixel_values");
    let features = tower("siglip_vision", -1, SelectStrategy::Full)
        .forward(pixels)
        .expect("forward");
    check(
        "siglip_vision features(-1, full)",
        &features,
        &tensor(&reference, "hidden_states.3"),
    );
    let normed = tensor(&reference, "last_hidden_state");
    assert!(
        max_abs_diff(&features, &normed) > 0.1,
        "hidden_states[-1] has no post_layernorm"
    );
}

#[test]
fn tower_inside_a_llava_checkpoint_gives_llavas_vision_features() {
    let dir = fixture("llava");
    let selection: FeatureSelection = read_config(dir.join("config.json")).expect("selection");
    assert_eq!(
        selection,
        FeatureSelection {
            layer: -2,
            strategy: SelectStrategy::Full
        }
    );
    let config = SiglipVisionConfig::from_file(dir.join("config.json")).expect("config");
    let store = WeightStore::open_dir(&dir).expect("weights");
    let preprocessing = read_preprocessing(&dir).expect("preprocessing");
    let tower = SiglipVisionTower::<TestBackend>::from_store(
        &store,
        &config,
        preprocessing,
        "vision_tower.vision_model",
        selection,
        &device(),
    )
    .expect("load");
    let reference = reference("llava");
    let features = tower
        .forward(tensor(&reference, "pixel_values"))
        .expect("forward");
    check(
        "llava vision_features",
        &features,
        &tensor(&reference, "vision_features"),
    );
}
