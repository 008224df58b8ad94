//! Forward passes against the transformers reference logits of every Qwen layout.

mod common;

use common::{assert_close_masked, load_model, masked_max_diff, Reference, F32_FIXTURES};
use vlm_hf::WeightStore;
use vlm_qwen::position_ids_from_mask;
use vlm_qwen::{QwenConfig, QwenModel, RopeScaling};
use vlm_testkit::assert_close;
use vlm_testkit::TestBackend;

const TOL: f32 = 1e-4;

#[test]
fn logits_match_transformers_with_given_position_ids() {
    for name in F32_FIXTURES {
        let model = load_model(name);
        let reference = Reference::open(name);
        let logits = model
            .forward(
                reference.input_ids.clone(),
                Some(reference.attention_mask.clone()),
                Some(reference.position_ids.clone()),
                None,
            )
            .expect("forward");
        let expected = reference.float3("logits");
        assert_close_masked(name, &logits, &expected, &reference.attention_mask, TOL);
    }
}

#[test]
fn logits_match_transformers_with_position_ids_from_the_mask() {
    for name in F32_FIXTURES {
        let model = load_model(name);
        let reference = Reference::open(name);
        let embeds = model.embed(reference.input_ids.clone()).expect("embed");
        let logits = model
            .forward_embeds(embeds, Some(reference.attention_mask.clone()), None, None)
            .expect("forward_embeds");
        let expected = reference.float3("logits");
        assert_close_masked(name, &logits, &expected, &reference.attention_mask, TOL);
    }
}

#[test]
fn last_hidden_state_and_embeddings_match_transformers() {
    for name in F32_FIXTURES {
        let model = load_model(name);
        let reference = Reference::open(name);
        let layers = model.config().num_hidden_layers;
        let embeds = model.embed(reference.input_ids.clone()).expect("embed");
        let expected_embeds = reference.float3("hidden_states.0");
        assert_close(
            &format!("{name} embeddings"),
            &embeds,
            &expected_embeds,
            0.0,
        );
        let hidden = model
            .forward_hidden(embeds, Some(reference.attention_mask.clone()), None, None)
            .expect("forward_hidden");
        let expected = reference.float3(&format!("hidden_states.{layers}"));
        let what = format!("{name} last hidden state");
        assert_close_masked(&what, &hidden, &expected, &reference.attention_mask, TOL);
    }
}

#[test]
fn position_ids_from_mask_follow_generate() {
    for name in F32_FIXTURES {
        let reference = Reference::open(name);
        let derived = position_ids_from_mask(reference.attention_mask.clone());
        assert_eq!(
            derived.to_data().iter::<i64>().collect::<Vec<_>>(),
            reference
                .position_ids
                .to_data()
                .iter::<i64>()
                .collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn half_precision_checkpoints_match_their_references() {
    // The references were computed in f32 from the rounded weights, so the only differences
    // left are f32 rounding: the f32 tolerance applies.
    for name in [
        "qwen2_bf16_sharded",
        "qwen2_f16",
        "v5/qwen2_bf16_sharded",
        "v5/qwen2_f16",
    ] {
        let model = load_model(name);
        let reference = Reference::open(name);
        let logits = model
            .forward(
                reference.input_ids.clone(),
                Some(reference.attention_mask.clone()),
                None,
                None,
            )
            .expect("forward");
        let expected = reference.float3("logits");
        assert_close_masked(name, &logits, &expected, &reference.attention_mask, TOL);
    }
}

#[test]
fn bf16_weights_are_not_the_f32_weights() {
    // Guards the previous test: the bf16 model must differ from the f32 one it was cast from
    // by more than the tolerance, or matching its reference would prove nothing.
    let reference = Reference::open("qwen2_bf16_sharded");
    let bf16 = load_model("qwen2_bf16_sharded");
    let f32_logits = Reference::open("qwen2_tied").float3("logits");
    let logits = bf16
        .forward(
            reference.input_ids.clone(),
            Some(reference.attention_mask.clone()),
            None,
            None,
        )
        .expect("forward");
    let diff = common::masked_max_diff(&logits, &f32_logits, &reference.attention_mask);
    assert!(
        diff > 10.0 * TOL,
        "bf16 vs f32 logits differ by only {diff:e}"
    );
}

#[test]
fn scaled_rope_fixtures_are_not_plain_rope() {
    // Guards the RoPE-scaled entries of F32_FIXTURES: the same weights with plain RoPE must
    // miss the reference by far more than the tolerance, or matching it would prove nothing.
    for name in ["qwen2_rope_linear", "qwen2_rope_yarn"] {
        let path = vlm_testkit::fixture(name);
        let mut config = QwenConfig::from_file(path.join("config.json")).expect("config");
        assert_ne!(config.rope_scaling, RopeScaling::None, "{name}");
        config.rope_scaling = RopeScaling::None;
        let store = WeightStore::open_dir(&path).expect("weights");
        let plain = QwenModel::<TestBackend>::from_store_at(
            &store,
            config,
            "model",
            "lm_head.weight",
            &vlm_testkit::device(),
        )
        .expect("plain-RoPE model");
        let reference = Reference::open(name);
        let mask = reference.attention_mask.clone();
        let logits = plain
            .forward(reference.input_ids.clone(), Some(mask.clone()), None, None)
            .expect("forward");
        let diff = masked_max_diff(&logits, &reference.float3("logits"), &mask);
        assert!(diff > 100.0 * TOL, "{name}: plain RoPE is within {diff:e}");
    }
}
