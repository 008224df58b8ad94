//! PEFT adapters on Qwen: logits and merged logits against peft's, the modules they land on
//! (v1's fused `c_attn` included), and merged models saved as checkpoints.

mod common;

use std::fs;

use burn::tensor::Tensor;
use common::{assert_close_masked, load_model, Reference};
use vlm_hf::WeightStore;
use vlm_lora::{adapted_modules, LoraConfig, TargetModules};
use vlm_qwen::{QwenError, QwenModel};
use vlm_testkit::{fixture, TestBackend};

const TOL: f32 = 1e-4;

/// The LoRA fixtures and the base model each adapts, as peft saves them over transformers
/// 4.57 and (`v5/`) 5.25.
const ADAPTERS: [(&str, &str); 7] = [
    ("lora", "qwen2_tied"),
    ("lora_rslora", "qwen2_tied"),
    ("lora_regex", "qwen2_tied"),
    ("lora_v1", "qwen_v1"),
    ("v5/lora", "v5/qwen2_tied"),
    ("v5/lora_rslora", "v5/qwen2_tied"),
    ("v5/lora_regex", "v5/qwen2_tied"),
];

fn with_adapter(name: &str, base: &str) -> QwenModel<TestBackend> {
    vlm_lora::load_adapter(load_model(base), fixture(name).join("adapter")).expect("adapter loads")
}

fn logits(model: &QwenModel<TestBackend>, reference: &Reference) -> Tensor<TestBackend, 3> {
    model
        .forward(
            reference.input_ids.clone(),
            Some(reference.attention_mask.clone()),
            Some(reference.position_ids.clone()),
            None,
        )
        .expect("forward")
}

#[test]
fn adapter_logits_match_peft_merged_or_not() {
    for (name, base) in ADAPTERS {
        let reference = Reference::open(name);
        let mask = &reference.attention_mask;
        let (expected, expected_merged) = (
            reference.float3("logits"),
            reference.float3("logits_merged"),
        );
        let model = with_adapter(name, base);
        let active = logits(&model, &reference);
        assert_close_masked(&format!("{name} adapter"), &active, &expected, mask, TOL);

        let merged = vlm_lora::merge(model);
        let what = format!("{name} merged");
        assert_close_masked(
            &what,
            &logits(&merged, &reference),
            &expected_merged,
            mask,
            TOL,
        );

        let unmerged = vlm_lora::unmerge(merged);
        let what = format!("{name} unmerged");
        assert_close_masked(&what, &logits(&unmerged, &reference), &expected, mask, TOL);

        let plain = vlm_lora::merge_and_unload(unmerged);
        assert!(adapted_modules(&plain).is_empty());
        let what = format!("{name} merge_and_unload");
        assert_close_masked(
            &what,
            &logits(&plain, &reference),
            &expected_merged,
            mask,
            TOL,
        );
    }
}

#[test]
fn base_logits_differ_from_adapted_ones() {
    // Guards the previous test: each adapter changes the logits far beyond the tolerance.
    for (name, base) in ADAPTERS {
        let reference = Reference::open(name);
        let base_logits = logits(&load_model(base), &reference);
        let diff = common::masked_max_diff(
            &base_logits,
            &reference.float3("logits"),
            &reference.attention_mask,
        );
        assert!(
            diff > 100.0 * TOL,
            "{name}: adapter changes logits by {diff:e}"
        );
    }
}

#[test]
fn adapters_land_on_the_targeted_modules() {
    assert_eq!(
        adapted_modules(&with_adapter("lora", "qwen2_tied")).len(),
        14
    );
    assert_eq!(
        adapted_modules(&with_adapter("lora_regex", "qwen2_tied")),
        [
            "model.layers.0.mlp.down_proj",
            "model.layers.1.self_attn.q_proj",
            "model.layers.1.self_attn.v_proj",
            "model.layers.1.mlp.down_proj",
        ]
    );
    let v1: Vec<String> = (0..2)
        .flat_map(|i| {
            [
                "attn.c_attn",
                "attn.c_proj",
                "mlp.w2",
                "mlp.w1",
                "mlp.c_proj",
            ]
            .map(|m| format!("transformer.h.{i}.{m}"))
        })
        .collect();
    assert_eq!(adapted_modules(&with_adapter("lora_v1", "qwen_v1")), v1);
}

#[test]
fn the_seed_targets_put_one_shared_adapter_on_v1_c_attn() {
    let config = LoraConfig::new(8, 32.0, TargetModules::parse("c_attn|w1|w2")).with_dropout(0.1);
    let model = vlm_lora::apply(load_model("qwen_v1"), &config).expect("apply");
    let expected: Vec<String> = (0..2)
        .flat_map(|i| ["attn.c_attn", "mlp.w2", "mlp.w1"].map(|m| format!("transformer.h.{i}.{m}")))
        .collect();
    assert_eq!(adapted_modules(&model), expected);
    let c_attn = match &model.model.layers[0].self_attn.qkv {
        vlm_qwen::QkvProjection::Fused(c_attn) => c_attn,
        other => panic!("v1 keeps c_attn fused, got {other:?}"),
    };
    let adapter = c_attn.adapter.as_ref().expect("c_attn adapter");
    // PEFT's shapes on v1: A [r, hidden], B [3 * hidden, r].
    assert_eq!(adapter.peft_a().dims(), [8, 32]);
    assert_eq!(adapter.peft_b().dims(), [96, 8]);
    assert_eq!(adapter.scaling, 4.0);
}

/// Saves `model` as a checkpoint of `base`'s layout, checks the files against `base`'s and
/// returns the model read back from them.
fn save_and_reload(model: &QwenModel<TestBackend>, base: &str) -> QwenModel<TestBackend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let base_config = fixture(base).join("config.json");
    model.save_merged(dir.path(), &base_config).expect("save");
    let read = |path: std::path::PathBuf| fs::read(path).expect("read");
    assert_eq!(read(dir.path().join("config.json")), read(base_config));
    let layout = |store: &WeightStore| -> Vec<(String, Vec<usize>, String)> {
        store
            .keys()
            .into_iter()
            .map(|key| {
                let info = store.info(key).expect("info");
                (key.to_string(), info.shape, info.dtype)
            })
            .collect()
    };
    let saved = WeightStore::open_dir(dir.path()).expect("saved weights");
    let original = WeightStore::open_dir(fixture(base)).expect("base weights");
    assert_eq!(
        layout(&saved),
        layout(&original),
        "{base}: same names and shapes"
    );
    QwenModel::load(dir.path(), &vlm_testkit::device()).expect("reload")
}

#[test]
fn merged_models_save_as_checkpoints_in_their_own_layout() {
    for (name, base) in [("lora", "qwen2_tied"), ("lora_v1", "qwen_v1")] {
        let reloaded = save_and_reload(&with_adapter(name, base), base);
        let reference = Reference::open(name);
        let what = format!("{name} saved merged model");
        let expected = reference.float3("logits_merged");
        let actual = logits(&reloaded, &reference);
        assert_close_masked(&what, &actual, &expected, &reference.attention_mask, TOL);
    }
}

#[test]
fn plain_models_save_and_reload_unchanged() {
    // Untied LM head, Qwen3's per-head norms, no adapters.
    for base in ["qwen2_untied", "qwen3"] {
        let reloaded = save_and_reload(&load_model(base), base);
        let reference = Reference::open(base);
        let what = format!("{base} saved and reloaded");
        let expected = reference.float3("logits");
        let actual = logits(&reloaded, &reference);
        assert_close_masked(&what, &actual, &expected, &reference.attention_mask, TOL);
    }
}

#[test]
fn saving_with_another_models_config_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load_model("qwen2_tied")
        .save_merged(dir.path(), fixture("qwen3").join("config.json"))
        .expect_err("qwen3 config");
    assert!(matches!(err, QwenError::ConfigMismatch { .. }), "{err:?}");
}
