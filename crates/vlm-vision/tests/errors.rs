//! Typed errors for broken checkpoints, bad configs, bad selections and bad pixels.

use std::fs;
use std::path::Path;

use burn::tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use tempfile::TempDir;
use vlm_hf::{HfError, PreprocessorConfig};
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{
    ClipVisionTower, FeatureSelection, SelectStrategy, SiglipVisionTower, VisionEncoder,
    VisionError,
};

/// What to do with one tensor when copying a checkpoint.
enum Edit {
    Drop,
    /// Keep only the first `rows` rows.
    Truncate(usize),
}

/// A copy of a fixture folder's configs and weights, with `key` dropped or truncated.
fn broken_copy(name: &str, key: &str, edit: Edit) -> TempDir {
    let source = fixture(name);
    let dir = tempfile::tempdir().expect("temp dir");
    fs::copy(source.join("config.json"), dir.path().join("config.json")).expect("copy config");
    copy_preprocessing(name, dir.path());
    let bytes = fs::read(source.join("model.safetensors")).expect("read weights");
    let file = SafeTensors::deserialize(&bytes).expect("parse weights");
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for (name, view) in file.tensors() {
        match (name == key, &edit) {
            (false, _) => views.push((name, view)),
            (true, Edit::Drop) => {}
            (true, Edit::Truncate(rows)) => views.push((name, truncated(&view, *rows))),
        }
    }
    let path = dir.path().join("model.safetensors");
    safetensors::serialize_to_file(views, None, &path).expect("write weights");
    dir
}

fn truncated<'a>(view: &TensorView<'a>, rows: usize) -> TensorView<'a> {
    let mut shape = view.shape().to_vec();
    let row_bytes = view.data().len() / shape[0];
    shape[0] = rows;
    TensorView::new(view.dtype(), shape, &view.data()[..rows * row_bytes]).expect("view")
}

/// Copies a fixture's `preprocessor_config.json` into `dir`.
fn copy_preprocessing(name: &str, dir: &Path) {
    let file = PreprocessorConfig::FILE_NAME;
    fs::copy(fixture(name).join(file), dir.join(file)).expect("copy preprocessor config");
}

fn write_config(dir: &Path, json: &str) {
    fs::write(dir.join("config.json"), json).expect("write config");
}

fn load_clip(dir: &Path) -> Result<ClipVisionTower<TestBackend>, VisionError> {
    ClipVisionTower::load(dir, FeatureSelection::default(), &device())
}

fn load_siglip(dir: &Path) -> Result<SiglipVisionTower<TestBackend>, VisionError> {
    SiglipVisionTower::load(dir, FeatureSelection::default(), &device())
}

#[test]
fn missing_tensor_is_named() {
    let key = "vision_model.encoder.layers.1.mlp.fc2.bias";
    let dir = broken_copy("clip_vision", key, Edit::Drop);
    match load_clip(dir.path()) {
        Err(VisionError::Hf(HfError::MissingTensor { key: missing, .. })) => {
            assert_eq!(missing, key)
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    let key = "vision_model.post_layernorm.weight";
    let dir = broken_copy("siglip_vision", key, Edit::Drop);
    match load_siglip(dir.path()) {
        Err(VisionError::Hf(HfError::MissingTensor { key: missing, .. })) => {
            assert_eq!(missing, key)
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn wrong_shape_names_key_and_both_shapes() {
    let key = "vision_model.embeddings.position_embedding.weight";
    let dir = broken_copy("clip_vision", key, Edit::Truncate(16));
    match load_clip(dir.path()) {
        Err(VisionError::Hf(HfError::ShapeMismatch {
            key: found,
            expected,
            actual,
            ..
        })) => {
            assert_eq!(found, key);
            assert_eq!((expected, actual), (vec![17, 32], vec![16, 32]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn siglip_head_weights_are_not_needed() {
    let dir = broken_copy("siglip_vision", "vision_model.head.probe", Edit::Drop);
    assert!(load_siglip(dir.path()).is_ok());
}

#[test]
fn feature_layer_out_of_range() {
    for layer in [4, -5] {
        let selection = FeatureSelection {
            layer,
            strategy: SelectStrategy::Full,
        };
        let result =
            ClipVisionTower::<TestBackend>::load(fixture("clip_vision"), selection, &device());
        match result {
            Err(VisionError::FeatureLayerOutOfRange {
                layer: found,
                num_layers: 3,
            }) => assert_eq!(found, layer),
            other => panic!("expected FeatureLayerOutOfRange, got {other:?}"),
        }
    }
}

#[test]
fn pixels_of_the_wrong_shape_are_rejected() {
    let tower = load_siglip(&fixture("siglip_vision")).expect("load");
    for shape in [[1, 3, 16, 16], [1, 1, 32, 32], [1, 3, 32, 40]] {
        let pixels = Tensor::<TestBackend, 4>::zeros(shape, &device());
        match tower.forward(pixels) {
            Err(VisionError::PixelShape {
                actual,
                channels: 3,
                image_size: 32,
            }) => assert_eq!(actual, shape),
            other => panic!("expected PixelShape, got {other:?}"),
        }
    }
}

#[test]
fn a_config_of_another_family_is_rejected() {
    match load_siglip(&fixture("clip_vision")) {
        Err(VisionError::WrongModelType { model_type, .. }) => {
            assert_eq!(model_type, "clip_vision_model")
        }
        other => panic!("expected WrongModelType, got {other:?}"),
    }
    match load_clip(&fixture("siglip_full")) {
        Err(VisionError::WrongModelType { model_type, .. }) => {
            assert_eq!(model_type, "siglip_vision_model")
        }
        other => panic!("expected WrongModelType, got {other:?}"),
    }
}

#[test]
fn unknown_activation_is_a_json_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(
        dir.path(),
        r#"{"model_type": "clip_vision_model", "hidden_act": "swish"}"#,
    );
    match load_clip(dir.path()) {
        Err(VisionError::Hf(HfError::Json { source, .. })) => {
            assert!(source.to_string().contains("swish"), "{source}")
        }
        other => panic!("expected Json, got {other:?}"),
    }
}

#[test]
fn impossible_sizes_are_rejected_before_reading_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = fixture("clip_vision").join("model.safetensors");
    fs::copy(weights, dir.path().join("model.safetensors")).expect("copy weights");
    copy_preprocessing("clip_vision", dir.path());
    for (json, field) in [
        (
            r#"{"hidden_size": 32, "num_attention_heads": 5}"#,
            "num_attention_heads",
        ),
        (r#"{"patch_size": 0}"#, "patch_size"),
        (r#"{"image_size": 8, "patch_size": 16}"#, "image_size"),
    ] {
        write_config(dir.path(), json);
        match load_clip(dir.path()) {
            Err(err @ VisionError::UnsupportedField { .. }) => {
                let message = err.to_string();
                let named = format!("field `{field}`");
                assert!(
                    message.contains("config.json") && message.contains(&named),
                    "{message}"
                );
            }
            other => panic!("{json}: expected UnsupportedField, got {other:?}"),
        }
    }
}

#[test]
fn fields_the_tower_cannot_honour_name_the_file_and_the_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let weights = fixture("clip_vision").join("model.safetensors");
    fs::copy(weights, dir.path().join("model.safetensors")).expect("copy weights");
    copy_preprocessing("clip_vision", dir.path());
    for (json, field) in [
        (r#"{"attention_dropout": 0.1}"#, "attention_dropout"),
        (r#"{"layer_norm_eps": 0}"#, "layer_norm_eps"),
        (
            r#"{"vision_config": {"layer_norm_eps": -1e-5}}"#,
            "layer_norm_eps",
        ),
    ] {
        write_config(dir.path(), json);
        match load_clip(dir.path()) {
            Err(err @ VisionError::UnsupportedField { .. }) => {
                let message = err.to_string();
                assert!(
                    message.contains("config.json") && message.contains(field),
                    "{message}"
                );
            }
            other => panic!("{json}: expected UnsupportedField, got {other:?}"),
        }
    }
}

#[test]
fn a_file_without_a_tower_lists_its_key_prefixes() {
    let dir = broken_copy(
        "clip_vision",
        "vision_model.embeddings.patch_embedding.weight",
        Edit::Drop,
    );
    match load_clip(dir.path()) {
        Err(VisionError::Hf(err @ HfError::LayoutNotFound { .. })) => {
            let message = err.to_string();
            assert!(message.contains("vision_model.encoder"), "{message}");
        }
        other => panic!("expected LayoutNotFound, got {other:?}"),
    }
}

#[test]
fn folder_without_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    write_config(dir.path(), r#"{"model_type": "siglip_vision_model"}"#);
    copy_preprocessing("siglip_vision", dir.path());
    match load_siglip(dir.path()) {
        Err(VisionError::Hf(HfError::NoWeights { .. })) => {}
        other => panic!("expected NoWeights, got {other:?}"),
    }
}

#[test]
fn a_folder_without_preprocessor_config_is_named() {
    let dir = broken_copy("clip_vision", "no such key", Edit::Drop);
    let path = dir.path().join(PreprocessorConfig::FILE_NAME);
    fs::remove_file(&path).expect("remove preprocessor config");
    match load_clip(dir.path()) {
        Err(err @ VisionError::MissingPreprocessorConfig { .. }) => {
            let message = err.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
        other => panic!("expected MissingPreprocessorConfig, got {other:?}"),
    }
}

#[test]
fn preprocessing_of_another_image_size_is_rejected() {
    let dir = broken_copy("siglip_vision", "no such key", Edit::Drop);
    let json =
        r#"{"image_processor_type": "SiglipImageProcessor", "size": {"height": 64, "width": 64}}"#;
    fs::write(dir.path().join(PreprocessorConfig::FILE_NAME), json).expect("write");
    match load_siglip(dir.path()) {
        Err(VisionError::InvalidConfig { reason, .. }) => {
            assert!(
                reason.contains("64x64") && reason.contains("32x32"),
                "{reason}"
            )
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[test]
fn towers_carry_their_preprocessing() {
    for (tower, name) in [
        (
            load_clip(&fixture("clip_vision")).map(|t| t.preprocessing().clone()),
            "clip_vision",
        ),
        (
            load_siglip(&fixture("siglip_vision")).map(|t| t.preprocessing().clone()),
            "siglip_vision",
        ),
    ] {
        let expected = PreprocessorConfig::load(fixture(name)).expect("fixture preprocessing");
        assert_eq!(tower.expect("load"), expected, "{name}");
    }
}
