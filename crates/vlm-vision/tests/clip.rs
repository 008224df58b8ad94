//! CLIP towers against transformers 4.57.6 (`clip_vision`, `clip_full`, `llava_clip` fixtures).

mod common;

use burn::tensor::Tensor;
use common::{check, reference, tensor};
use vlm_hf::{read_config, WeightStore};
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{
    read_preprocessing, ClipVisionConfig, ClipVisionTower, FeatureSelection, SelectStrategy,
    VisionEncoder,
};

const LAST_FULL: FeatureSelection = FeatureSelection {
    layer: -1,
    strategy: SelectStrategy::Full,
};

/// `x[:, 1:, :]`: the patch tokens of a CLIP hidden state.
fn without_first_token(x: Tensor<TestBackend, 3>) -> Tensor<TestBackend, 3> {
    let [_, tokens, _] = x.dims();
    x.narrow(1, 1, tokens - 1)
}

fn tower(name: &str, selection: FeatureSelection) -> ClipVisionTower<TestBackend> {
    ClipVisionTower::load(fixture(name), selection, &device()).expect("load CLIP tower")
}

fn matches_every_output(name: &str) {
    let reference = reference(name);
    let pixels = tensor::<4>(&reference, "pixel_values");
    let out = tower(name, LAST_FULL).outputs(pixels).expect("forward");
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
    let pooled = out.pooler_output.expect("CLIP pools the CLS token");
    check(
        &format!("{name} pooler_output"),
        &pooled,
        &tensor(&reference, "pooler_output"),
    );
}

#[test]
fn clip_vision_model_matches_transformers() {
    matches_every_output("clip_vision");
}

#[test]
fn clip_model_vision_tower_matches_transformers() {
    matches_every_output("clip_full");
}

#[test]
fn clip_as_transformers_5_saves_it_matches_transformers() {
    // transformers 5 saves the vision model without the `vision_model.` key prefix.
    matches_every_output("v5/clip_vision");
    matches_every_output("v5/clip_full");
}

#[test]
fn penultimate_layer_with_default_strategy_drops_the_cls_token() {
    let reference = reference("clip_vision");
    let pixels = tensor::<4>(&reference, "pixel_values");
    let tower = tower("clip_vision", FeatureSelection::default());
    assert_eq!(
        (
            tower.tokens_per_image(),
            tower.output_dim(),
            tower.image_size()
        ),
        (16, 32, 32)
    );
    let features = tower.forward(pixels).expect("forward");
    let expected = without_first_token(tensor(&reference, "hidden_states.2"));
    check("clip_vision features(-2, default)", &features, &expected);
}

#[test]
fn full_strategy_and_explicit_indices_pick_the_matching_hidden_state() {
    let reference = reference("clip_full");
    let pixels = tensor::<4>(&reference, "pixel_values");
    for (layer, index) in [(-1, 3), (-4, 0), (0, 0), (1, 1), (3, 3)] {
        let selection = FeatureSelection {
            layer,
            strategy: SelectStrategy::Full,
        };
        let tower = tower("clip_full", selection);
        assert_eq!(tower.tokens_per_image(), 17);
        let features = tower.forward(pixels.clone()).expect("forward");
        let expected = tensor(&reference, &format!("hidden_states.{index}"));
        check(
            &format!("clip_full features({layer}, full)"),
            &features,
            &expected,
        );
    }
}

#[test]
fn tower_inside_a_llava_checkpoint_gives_llavas_vision_features() {
    let dir = fixture("llava_clip");
    let selection: FeatureSelection = read_config(dir.join("config.json")).expect("selection");
    assert_eq!(selection, FeatureSelection::default());
    let config = ClipVisionConfig::from_file(dir.join("config.json")).expect("config");
    let store = WeightStore::open_dir(&dir).expect("weights");
    let preprocessing = read_preprocessing(&dir).expect("preprocessing");
    let tower = ClipVisionTower::<TestBackend>::from_store(
        &store,
        &config,
        preprocessing,
        "vision_tower.vision_model",
        selection,
        &device(),
    )
    .expect("load");
    let reference = reference("llava_clip");
    let features = tower
        .forward(tensor(&reference, "pixel_values"))
        .expect("forward");
    check(
        "llava_clip vision_features",
        &features,
        &tensor(&reference, "vision_features"),
    );
}
