//! A Qwen language model inside a LLaVA checkpoint: its `text_config` and its weights under
//! the legacy llava-hf key prefixes and the newer ones, checked against transformers' logits
//! of the llava fixtures (the language model's part: reference `inputs_embeds` in, `logits`
//! out).

mod common;

use std::fs;
use std::path::Path;

use common::assert_close_masked;
use serde_json::{Map, Value};
use vlm_hf::{HfError, WeightStore};
use vlm_qwen::{QwenConfig, QwenError, QwenModel, QwenVariant};
use vlm_testkit::{device, fixture, TestBackend};

const TOL: f32 = 1e-4;

/// Decoder prefix and LM head key of checkpoints saved by transformers before 4.52 (and by
/// 4.57's `save_pretrained`, which reverts to them).
const LEGACY: (&str, &str) = ("language_model.model", "language_model.lm_head.weight");
/// The same for the module tree of transformers 4.52 and later.
const NEWER: (&str, &str) = ("model.language_model", "lm_head.weight");

fn llava_config(name: &str) -> QwenConfig {
    QwenConfig::from_file(fixture(name).join("config.json")).expect("llava text_config")
}

fn load_at(
    name: &str,
    store: &WeightStore,
    (prefix, head): (&str, &str),
) -> Result<QwenModel<TestBackend>, QwenError> {
    QwenModel::from_store_at(store, llava_config(name), prefix, head, &device())
}

/// Runs the language model on the fixture's reference `inputs_embeds` and compares logits.
fn check_logits(name: &str, model: &QwenModel<TestBackend>) {
    let dev = device();
    let reference =
        WeightStore::open_file(fixture(name).join("reference.safetensors")).expect("reference");
    let mask = reference.int("attention_mask", &dev).expect("mask");
    let positions = reference.int("position_ids", &dev).expect("positions");
    let embeds = reference.float_any("inputs_embeds", &dev).expect("embeds");
    let logits = model
        .forward_embeds(embeds, Some(mask.clone()), Some(positions), None)
        .expect("forward");
    let expected = reference.float_any("logits", &dev).expect("logits");
    assert_close_masked(name, &logits, &expected, &mask, TOL);
}

/// The newer name of a legacy llava-hf key.
fn newer_name(key: &str) -> String {
    match key.strip_prefix("language_model.") {
        Some("lm_head.weight") => "lm_head.weight".to_string(),
        Some(rest) => format!(
            "model.language_model.{}",
            rest.strip_prefix("model.").unwrap_or(rest)
        ),
        None => format!("model.{key}"),
    }
}

/// Copies a safetensors file with every tensor renamed by `rename` (the header is rewritten,
/// the data bytes are kept).
fn renamed_copy(from: &Path, to: &Path, rename: impl Fn(&str) -> String) {
    let bytes = fs::read(from).expect("read weights");
    let (len, rest) = bytes.split_at(8);
    let len = usize::try_from(u64::from_le_bytes(len.try_into().expect("8 bytes"))).expect("len");
    let (header, data) = rest.split_at(len);
    let header: Map<String, Value> = serde_json::from_slice(header).expect("header");
    let renamed: Map<String, Value> = header
        .into_iter()
        .map(|(key, info)| match key.as_str() {
            "__metadata__" => (key, info),
            _ => (rename(&key), info),
        })
        .collect();
    let mut header = serde_json::to_vec(&renamed).expect("encode header");
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(data);
    fs::write(to, out).expect("write weights");
}

#[test]
fn llava_text_configs_are_read_from_text_config() {
    let siglip = llava_config("llava");
    assert_eq!(siglip.variant, QwenVariant::Qwen2);
    assert_eq!(
        (siglip.vocab_size, siglip.hidden_size, siglip.head_dim),
        (512, 48, 12)
    );
    assert!(siglip.tie_word_embeddings, "set inside text_config");
    let clip = llava_config("llava_clip");
    assert_eq!(
        (clip.vocab_size, clip.hidden_size, clip.head_dim),
        (384, 40, 10)
    );
    assert!(
        !clip.tie_word_embeddings,
        "text_config has none: the top-level false applies"
    );
}

#[test]
fn the_sections_tie_word_embeddings_wins_over_the_top_level_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config.json");
    let text = r#""model_type": "qwen2", "vocab_size": 16, "hidden_size": 8,
        "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2"#;
    for (json, tied) in [
        (
            format!(
                r#"{{"tie_word_embeddings": false,
                    "text_config": {{{text}, "tie_word_embeddings": true}}}}"#
            ),
            true,
        ),
        (format!(r#"{{"text_config": {{{text}}}}}"#), false),
    ] {
        fs::write(&path, &json).expect("write config");
        let config = QwenConfig::from_file(&path).expect("config");
        assert_eq!(config.tie_word_embeddings, tied, "{json}");
    }
}

#[test]
fn legacy_llava_hf_names_give_transformers_logits() {
    for name in ["llava", "llava_clip"] {
        let store = WeightStore::open_dir(fixture(name)).expect("weights");
        check_logits(name, &load_at(name, &store, LEGACY).expect("load"));
    }
}

#[test]
fn newer_llava_names_give_transformers_logits() {
    for name in ["llava", "llava_clip"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        renamed_copy(&fixture(name).join("model.safetensors"), &path, newer_name);
        let store = WeightStore::open_file(&path).expect("weights");
        assert!(store.contains("model.language_model.norm.weight"));
        check_logits(name, &load_at(name, &store, NEWER).expect("load"));
    }
}

#[test]
fn missing_tensors_are_named_as_stored() {
    let store = WeightStore::open_dir(fixture("llava_clip")).expect("weights");
    for (keys, missing) in [
        (("text_model", LEGACY.1), "text_model.embed_tokens.weight"),
        ((LEGACY.0, "lm_head.weight"), "lm_head.weight"),
    ] {
        match load_at("llava_clip", &store, keys) {
            Err(QwenError::Hf(HfError::MissingTensor { key, .. })) => assert_eq!(key, missing),
            other => panic!("expected MissingTensor {missing}, got {other:?}"),
        }
    }
}
