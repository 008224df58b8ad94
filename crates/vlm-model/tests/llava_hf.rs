//! Whole Hugging Face LLaVA folders: both key layouts, the language model alone, and typed
//! errors for what this crate cannot load. (`llava_reference.rs` checks the legacy layout's
//! numbers in detail.)

mod common;

use std::fs;
use std::path::Path;

use common::{masked_max_diff, Llava};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use tempfile::TempDir;
use vlm_hf::{HfError, PreprocessorConfig, WeightStore};
use vlm_model::{load_language_model, load_llava_hf, LlavaLayout, ModelError};
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{VisionEncoder, VisionError};

const TOL: f32 = 1e-4;

/// The name a legacy llava-hf key has in the module tree of transformers 4.52 and later.
fn nested_name(key: &str) -> String {
    match key.strip_prefix("language_model.") {
        Some("lm_head.weight") => "lm_head.weight".to_string(),
        Some(rest) => {
            let rest = rest.strip_prefix("model.").unwrap_or(rest);
            format!("model.language_model.{rest}")
        }
        None => format!("model.{key}"),
    }
}

/// A copy of a llava fixture folder (configs and weights), tensors renamed by `rename` and
/// `skip` left out.
fn llava_copy(name: &str, rename: fn(&str) -> String, skip: &[&str]) -> TempDir {
    let (source, out) = (fixture(name), tempfile::tempdir().expect("tempdir"));
    for file in ["config.json", PreprocessorConfig::FILE_NAME] {
        if !skip.contains(&file) {
            fs::copy(source.join(file), out.path().join(file)).expect("copy config");
        }
    }
    let bytes = fs::read(source.join("model.safetensors")).expect("read weights");
    let file = SafeTensors::deserialize(&bytes).expect("parse weights");
    let views: Vec<(String, TensorView<'_>)> = file
        .tensors()
        .into_iter()
        .map(|(key, view)| (rename(&key), view))
        .collect();
    let path = out.path().join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).expect("write weights");
    out
}

fn load_err(dir: &Path) -> ModelError {
    match load_llava_hf::<TestBackend>(dir, &device()) {
        Ok(_) => panic!("{} should not load", dir.display()),
        Err(err) => err,
    }
}

#[test]
fn both_key_layouts_give_transformers_logits() {
    for name in ["llava", "llava_clip"] {
        let llava = Llava::load(name);
        let nested = llava_copy(name, nested_name, &[]);
        let store = WeightStore::open_dir(nested.path()).expect("weights");
        let expected = LlavaLayout {
            vision: "model.vision_tower.vision_model".into(),
            projector: "model.multi_modal_projector".into(),
            decoder: "model.language_model".into(),
            lm_head: "lm_head.weight".into(),
        };
        assert_eq!(LlavaLayout::detect(&store).expect("layout"), expected);
        let model = load_llava_hf::<TestBackend>(nested.path(), &device()).expect("nested");
        let mask = llava.ids("attention_mask");
        for (layout, model) in [("legacy", &llava.model), ("nested", &model)] {
            let logits = model.forward(llava.batch()).expect("forward");
            let diff = masked_max_diff(&logits, &llava.float("logits"), &mask);
            eprintln!("{name} {layout} logits: max |diff| = {diff:e}");
            assert!(diff <= TOL, "{name} {layout}: {diff:e}");
        }
    }
}

#[test]
fn the_checkpoint_brings_its_settings() {
    let store = WeightStore::open_dir(fixture("llava_clip")).expect("weights");
    let expected = LlavaLayout {
        vision: "vision_tower.vision_model".into(),
        projector: "multi_modal_projector".into(),
        decoder: "language_model.model".into(),
        lm_head: "language_model.lm_head.weight".into(),
    };
    assert_eq!(LlavaLayout::detect(&store).expect("layout"), expected);
    let model = Llava::load("llava_clip").model;
    assert_eq!(model.image_token_id(), 383);
    assert_eq!(model.tokens_per_image(), 16, "CLS dropped: 4 x 4 patches");
    let expected = PreprocessorConfig::load(fixture("llava_clip")).expect("preprocessing");
    assert_eq!(model.vision().preprocessing(), &expected);
}

#[test]
fn the_language_model_alone_loads_from_either_folder_kind() {
    let dev = device();
    let inside = load_language_model::<TestBackend>(fixture("llava_clip"), &dev).expect("llava");
    assert_eq!(inside.config().hidden_size, 40);
    assert!(!inside.config().tie_word_embeddings);
    let plain = load_language_model::<TestBackend>(fixture("qwen2_tied"), &dev).expect("qwen");
    assert_eq!(plain.config().hidden_size, 64);
}

#[test]
fn a_projector_other_than_gelu_is_refused() {
    let dir = llava_copy("llava", str::to_string, &[]);
    let path = dir.path().join("config.json");
    let text = fs::read_to_string(&path).expect("read config");
    let edited = text.replace(
        r#""projector_hidden_act": "gelu""#,
        r#""projector_hidden_act": "relu""#,
    );
    assert_ne!(text, edited);
    fs::write(&path, edited).expect("write config");
    match load_err(dir.path()) {
        ModelError::UnsupportedLlava { reason, .. } => assert!(reason.contains("relu"), "{reason}"),
        other => panic!("expected UnsupportedLlava, got {other}"),
    }
}

#[test]
fn a_list_of_feature_layers_is_refused_by_name() {
    let dir = llava_copy("v5/llava", str::to_string, &[]);
    let path = dir.path().join("config.json");
    let text = fs::read_to_string(&path).expect("read config");
    let edited = text.replace(
        r#""vision_feature_layer": -2"#,
        r#""vision_feature_layer": [-2, -1]"#,
    );
    assert_ne!(text, edited);
    fs::write(&path, edited).expect("write config");
    match load_err(dir.path()) {
        err @ ModelError::UnsupportedLlava { .. } => {
            let message = err.to_string();
            assert!(
                message.contains("vision_feature_layer [-2,-1]"),
                "{message}"
            );
            assert!(message.contains("config.json"), "{message}");
        }
        other => panic!("expected UnsupportedLlava, got {other}"),
    }
}

#[test]
fn an_unknown_layout_lists_the_key_prefixes_it_holds() {
    // A checkpoint whose projector is named otherwise (here: `mm_projector`, as the original
    // LLaVA repository saves it) is refused, naming what the file holds.
    let dir = llava_copy(
        "llava",
        |key| key.replace("multi_modal_projector", "mm_projector"),
        &[],
    );
    match load_err(dir.path()) {
        ModelError::Hf(err @ HfError::LayoutNotFound { .. }) => {
            let message = err.to_string();
            assert!(message.contains("LLaVA projector"), "{message}");
            assert!(message.contains("mm_projector.linear_1"), "{message}");
        }
        other => panic!("expected LayoutNotFound, got {other}"),
    }
}

#[test]
fn a_folder_without_preprocessor_config_is_named() {
    let dir = llava_copy("llava", str::to_string, &[PreprocessorConfig::FILE_NAME]);
    match load_err(dir.path()) {
        ModelError::Vision(VisionError::MissingPreprocessorConfig { path }) => {
            assert_eq!(path, dir.path().join(PreprocessorConfig::FILE_NAME))
        }
        other => panic!("expected MissingPreprocessorConfig, got {other}"),
    }
}
