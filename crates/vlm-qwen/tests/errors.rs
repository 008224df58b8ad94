//! Typed errors for broken checkpoints (written into temporary folders) and bad inputs.

mod common;

use std::fs;
use std::path::Path;

use burn::tensor::{Int, Tensor, TensorData};
use common::{columns, load_model, Reference};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use vlm_hf::HfError;
use vlm_qwen::{Decoding, GenerationConfig, QwenConfig, QwenError, QwenModel, SamplingParams};
use vlm_testkit::{device, fixture, TestBackend};

/// A copy of fixture `name` whose config.json went through `edit`.
fn broken_copy(name: &str, edit: impl FnOnce(&mut Map<String, Value>)) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for entry in fs::read_dir(fixture(name)).expect("fixture dir") {
        let path = entry.expect("entry").path();
        let target = dir.path().join(path.file_name().expect("file name"));
        fs::copy(&path, target).expect("copy");
    }
    let config_path = dir.path().join("config.json");
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(&config_path).expect("read")).expect("json");
    edit(config.as_object_mut().expect("object"));
    fs::write(&config_path, config.to_string()).expect("write");
    dir
}

fn load(dir: &Path) -> Result<QwenModel<TestBackend>, QwenError> {
    QwenModel::load(dir, &device())
}

#[test]
fn unknown_model_type_names_it_and_the_file() {
    let dir = broken_copy("qwen2_tied", |c| {
        c.insert("model_type".into(), "llama".into());
    });
    let err = load(dir.path()).expect_err("llama is not a Qwen");
    assert!(
        matches!(&err, QwenError::UnknownModelType { model_type, path }
            if model_type == "llama" && path == &dir.path().join("config.json")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("llama") && message.contains("config.json"),
        "{message}"
    );
}

#[test]
fn missing_model_type_is_a_json_error_naming_the_file() {
    let dir = broken_copy("qwen3", |c| {
        c.remove("model_type");
    });
    let err = load(dir.path()).expect_err("no model_type");
    assert!(
        matches!(&err, QwenError::Hf(HfError::Json { path, .. }) if path.ends_with("config.json")),
        "{err:?}"
    );
    assert!(err.to_string().contains("model_type"), "{err}");
}

#[test]
fn missing_tensor_is_named() {
    // Untied config over a tied checkpoint: there is no lm_head.weight to load.
    let dir = broken_copy("qwen2_tied", |c| {
        c.insert("tie_word_embeddings".into(), false.into());
    });
    let err = load(dir.path()).expect_err("lm_head missing");
    assert!(
        matches!(&err, QwenError::Hf(HfError::MissingTensor { key, .. }) if key == "lm_head.weight"),
        "{err:?}"
    );
}

#[test]
fn missing_v1_fused_qkv_is_named() {
    // A v1 config over Qwen2 weights: the first v1 tensor looked up is absent.
    let dir = broken_copy("qwen2_untied", |c| {
        c.insert("model_type".into(), "qwen".into());
        c.insert("kv_channels".into(), 8.into());
    });
    let err = load(dir.path()).expect_err("v1 names absent");
    assert!(
        matches!(&err, QwenError::Hf(HfError::MissingTensor { key, .. }) if key.starts_with("transformer.")),
        "{err:?}"
    );
}

#[test]
fn wrong_shape_reports_expected_and_actual() {
    let dir = broken_copy("qwen2_tied", |c| {
        c.insert("intermediate_size".into(), 96.into());
    });
    let err = load(dir.path()).expect_err("MLP width disagrees with the weights");
    match &err {
        QwenError::Hf(HfError::ShapeMismatch {
            key,
            expected,
            actual,
            ..
        }) => {
            assert!(key.contains(".mlp."), "{key}");
            assert!(
                expected.contains(&96) && actual.contains(&128),
                "{expected:?} {actual:?}"
            );
        }
        other => panic!("expected a shape mismatch, got {other:?}"),
    }
}

#[test]
fn v1_intermediate_size_is_twice_the_mlp_width() {
    // Reading the v1 config's intermediate_size as the MLP width would be a shape mismatch.
    let dir = broken_copy("qwen_v1", |c| {
        let width = c["intermediate_size"].as_u64().expect("size") / 2;
        c.insert("intermediate_size".into(), width.into());
    });
    let err = load(dir.path()).expect_err("halved twice");
    assert!(
        matches!(&err, QwenError::Hf(HfError::ShapeMismatch { .. })),
        "{err:?}"
    );
}

/// A config edit and the field its error must name.
type Case = (
    &'static str,
    Box<dyn Fn(&mut Map<String, Value>)>,
    &'static str,
);

/// Setting one top-level `key` to `value` in fixture `name`: refused, naming `key`.
fn setting(name: &'static str, key: &'static str, value: Value) -> Case {
    (name, Box::new(move |c| set(c, key, value.clone())), key)
}

/// Setting `rope_parameters` (transformers 5's form) of `v5/qwen2_tied` to `value`.
fn rope_parameters(value: Value, field: &'static str) -> Case {
    let edit = move |c: &mut Map<String, Value>| set(c, "rope_parameters", value.clone());
    ("v5/qwen2_tied", Box::new(edit), field)
}

#[test]
fn unsupported_or_impossible_settings_name_the_file_and_the_field() {
    let cases: Vec<Case> = vec![
        setting("qwen_v1", "rotary_pct", json!(0.5)),
        setting("qwen_v1", "scale_attn_weights", json!(false)),
        setting("qwen_v1", "use_cache_quantization", json!(true)),
        setting("qwen_v1", "attn_dropout_prob", json!(0.1)),
        setting("qwen2_tied", "hidden_act", json!("gelu")),
        setting("qwen2_tied", "attention_dropout", json!(0.1)),
        setting("qwen2_tied", "rope_theta", json!(0.0)),
        setting("qwen2_tied", "rms_norm_eps", json!(0.0)),
        setting("qwen3", "rms_norm_eps", json!(-1e-6)),
        setting("qwen2_tied", "num_hidden_layers", json!(0)),
        setting("qwen2_tied", "num_key_value_heads", json!(3)),
        setting("qwen2_tied", "num_attention_heads", json!(3)),
        setting(
            "v5/qwen2_tied",
            "layer_types",
            json!(["full_attention", "sliding_attention"]),
        ),
        (
            "qwen2_tied",
            Box::new(|c| {
                c.remove("layer_types");
                set(c, "use_sliding_window", json!(true));
                set(c, "max_window_layers", json!(1));
            }),
            "use_sliding_window",
        ),
        (
            "qwen2_tied",
            Box::new(|c| {
                set(
                    c,
                    "rope_scaling",
                    json!({"rope_type": "dynamic", "factor": 2.0}),
                )
            }),
            "rope_scaling.rope_type",
        ),
        rope_parameters(
            json!({"rope_theta": 1e6, "rope_type": "longrope"}),
            "rope_parameters.rope_type",
        ),
        rope_parameters(
            json!({"rope_theta": 1e6, "rope_type": "linear"}),
            "rope_parameters.factor",
        ),
        rope_parameters(
            json!({"rope_theta": 1e6, "rope_type": "default", "partial_rotary_factor": 0.5}),
            "rope_parameters.partial_rotary_factor",
        ),
        rope_parameters(
            json!({"rope_theta": -1.0, "rope_type": "default"}),
            "rope_theta",
        ),
        (
            "v5/qwen2_tied",
            Box::new(|c| set(c, "rope_theta", json!(10000.0))),
            "rope_parameters.rope_theta",
        ),
        (
            "llava",
            Box::new(|c| {
                set(c, "tie_word_embeddings", json!(true));
                set(&mut c["text_config"], "tie_word_embeddings", json!(false));
            }),
            "text_config.tie_word_embeddings",
        ),
    ];
    for (name, edit, field) in cases {
        let dir = broken_copy(name, edit);
        let path = dir.path().join("config.json");
        let err = QwenConfig::from_file(&path).expect_err(field);
        assert!(
            matches!(&err, QwenError::UnsupportedConfig { field: f, path: p, .. }
                if f == field && p == &path),
            "{name} {field}: {err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("config.json") && message.contains(field),
            "{message}"
        );
    }
}

fn set(config: &mut impl ConfigObject, key: &str, value: Value) {
    config.object().insert(key.into(), value);
}

/// A JSON object to edit: a config, or a section of one.
trait ConfigObject {
    fn object(&mut self) -> &mut Map<String, Value>;
}

impl ConfigObject for Map<String, Value> {
    fn object(&mut self) -> &mut Map<String, Value> {
        self
    }
}

impl ConfigObject for Value {
    fn object(&mut self) -> &mut Map<String, Value> {
        self.as_object_mut().expect("a JSON object")
    }
}

#[test]
fn qwen_v1_refuses_inputs_past_seq_length() {
    // v1's dynamic NTK and log-n scaling act past seq_length: not computed, so refused.
    let dir = broken_copy("qwen_v1", |c| set(c, "seq_length", json!(4)));
    let model = load(dir.path()).expect("load");
    assert_eq!(model.config().max_context, Some(4));
    let reference = Reference::open("qwen_v1");
    let short = columns(&reference.input_ids, 0..4);
    model
        .forward(short, None, None, None)
        .expect("4 tokens fit");
    let err = model
        .forward(reference.input_ids.clone(), None, None, None)
        .expect_err("longer than seq_length");
    assert!(err.to_string().contains("seq_length 4"), "{err}");
}

#[test]
fn missing_folder_is_an_io_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = load(&dir.path().join("nowhere")).expect_err("no folder");
    assert!(matches!(&err, QwenError::Hf(HfError::Io { .. })), "{err:?}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let model = load_model("qwen2_tied");
    let reference = Reference::open("qwen2_tied");
    let dev = device();
    let vocab = model.config().vocab_size as i64;
    let out_of_range: Tensor<TestBackend, 2, Int> =
        Tensor::from_data(TensorData::new(vec![1i64, vocab], [1, 2]), &dev);
    let short_mask = columns(&reference.attention_mask, 0..5);
    let mut cache = model.new_cache();
    let one_sample = columns(&reference.input_ids, 0..3).slice([0..1, 0..3]);
    model
        .forward(one_sample, None, None, Some(&mut cache))
        .expect("prefill of one sample");
    let results = [
        model.forward(out_of_range, None, None, None),
        model.forward(reference.input_ids.clone(), Some(short_mask), None, None),
        model.forward(reference.input_ids.clone(), None, None, Some(&mut cache)),
    ];
    for result in results {
        assert!(
            matches!(result, Err(QwenError::InvalidInput(_))),
            "{result:?}"
        );
    }
}

#[test]
fn bad_generation_settings_are_typed_errors() {
    let model = load_model("qwen2_tied");
    let reference = Reference::open("qwen2_tied");
    let sample = |top_p| {
        Decoding::Sample(SamplingParams {
            temperature: 1.0,
            top_k: None,
            top_p: Some(top_p),
            seed: 0,
        })
    };
    let configs = [
        GenerationConfig {
            decoding: sample(0.0),
            ..GenerationConfig::greedy(2)
        },
        GenerationConfig {
            repetition_penalty: 0.0,
            ..GenerationConfig::greedy(2)
        },
        GenerationConfig {
            pad_token_id: model.config().vocab_size as u32,
            ..GenerationConfig::greedy(2)
        },
    ];
    for config in configs {
        let result = model.generate(reference.input_ids.clone(), None, &config, |_| {});
        assert!(
            matches!(result, Err(QwenError::InvalidGeneration(_))),
            "{config:?}"
        );
    }
}
