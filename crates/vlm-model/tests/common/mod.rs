//! Shared by the integration tests: the llava fixtures built into a VLM, their reference
//! outputs, and masked comparison.

#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::path::Path;

use burn::tensor::{Int, Tensor};
use serde_json::Value;
use tempfile::TempDir;
use vlm_hf::{read_config, WeightStore};
use vlm_model::{MlpProjector, VisionLanguageModel, VisionTower, VlmBatch};
use vlm_qwen::QwenModel;
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};
use vlm_vision::FeatureSelection;

/// The VLM the llava fixtures build into.
pub type LlavaModel = VisionLanguageModel<
    TestBackend,
    VisionTower<TestBackend>,
    MlpProjector<TestBackend>,
    QwenModel<TestBackend>,
>;

/// Key prefix of the vision tower inside a llava-hf checkpoint.
pub const TOWER_PREFIX: &str = "vision_tower.vision_model";

/// A llava fixture's model, its reference outputs, and the temporary Hugging Face folder of
/// its language model (kept alive as long as the fixture).
pub struct Llava {
    pub name: &'static str,
    pub model: LlavaModel,
    pub reference: WeightStore,
    pub text_dir: TempDir,
}

impl Llava {
    /// Builds the VLM from the fixture's own checkpoint: the tower through its key prefix,
    /// the Qwen LLM from a temporary folder of the `language_model.*` tensors renamed to
    /// `model.*` / `lm_head.*`, the projector from `projector.safetensors`.
    pub fn load(name: &'static str) -> Self {
        let dir = fixture(name);
        let config: Value = read_config(dir.join("config.json")).expect("llava config");
        let text_dir = text_model_folder(&dir, &config);
        let dev = device();
        let selection: FeatureSelection = read_config(dir.join("config.json")).expect("selection");
        let vision = VisionTower::load(&dir, TOWER_PREFIX, selection, &dev).expect("tower");
        let language_model = QwenModel::load(text_dir.path(), &dev).expect("language model");
        let projector =
            WeightStore::open_file(dir.join("projector.safetensors")).expect("projector file");
        let hidden = config["text_config"]["hidden_size"]
            .as_u64()
            .expect("hidden") as usize;
        let vision_dim = config["vision_config"]["hidden_size"]
            .as_u64()
            .expect("width") as usize;
        let projector =
            MlpProjector::from_store(&projector, vision_dim, hidden, &dev).expect("projector");
        let image_token = config["image_token_index"].as_u64().expect("image token") as u32;
        let model = VisionLanguageModel::new(vision, projector, language_model, image_token)
            .expect("assemble");
        Self {
            name,
            model,
            reference: reference(name),
            text_dir,
        }
    }

    pub fn ids(&self, key: &str) -> Tensor<TestBackend, 2, Int> {
        self.reference.int(key, &device()).expect(key)
    }

    pub fn float<const D: usize>(&self, key: &str) -> Tensor<TestBackend, D> {
        self.reference.float_any(key, &device()).expect(key)
    }

    /// The reference batch: ids, mask and both images.
    pub fn batch(&self) -> VlmBatch<TestBackend> {
        VlmBatch {
            input_ids: self.ids("input_ids"),
            attention_mask: Some(self.ids("attention_mask")),
            pixel_values: Some(self.float("pixel_values")),
        }
    }
}

/// The `reference.safetensors` of a fixture folder.
pub fn reference(name: &str) -> WeightStore {
    WeightStore::open_file(fixture(name).join("reference.safetensors")).expect("reference file")
}

/// A Hugging Face Qwen2 folder holding the text model of a llava-hf checkpoint.
fn text_model_folder(llava_dir: &Path, config: &Value) -> TempDir {
    let out = tempfile::tempdir().expect("tempdir");
    let mut text_config = config["text_config"].clone();
    if let Some(tied) = config.get("tie_word_embeddings") {
        text_config["tie_word_embeddings"] = tied.clone();
    }
    let json = serde_json::to_vec_pretty(&text_config).expect("json");
    fs::write(out.path().join("config.json"), json).expect("write config");
    let bytes = fs::read(llava_dir.join("model.safetensors")).expect("read checkpoint");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .tensors()
        .into_iter()
        .filter_map(|(name, view)| {
            let inner = name.strip_prefix("language_model.")?;
            Some((inner.to_string(), view))
        })
        .collect();
    let path = out.path().join("model.safetensors");
    safetensors::serialize_to_file(renamed, None, &path).expect("write weights");
    out
}

/// Largest difference over the positions where `attention_mask` is 1.
pub fn masked_max_diff(
    actual: &Tensor<TestBackend, 3>,
    expected: &Tensor<TestBackend, 3>,
    attention_mask: &Tensor<TestBackend, 2, Int>,
) -> f32 {
    let padding = attention_mask
        .clone()
        .equal_elem(0)
        .unsqueeze_dim::<3>(2)
        .expand(expected.dims());
    let actual = actual.clone().mask_where(padding, expected.clone());
    max_abs_diff(&actual, expected)
}

/// Asserts `max_abs_diff <= tol`, printing the measured difference.
pub fn check<const D: usize>(
    what: &str,
    actual: &Tensor<TestBackend, D>,
    expected: &Tensor<TestBackend, D>,
    tol: f32,
) {
    let diff = max_abs_diff(actual, expected);
    eprintln!("{what}: max |diff| = {diff:e}");
    assert!(diff <= tol, "{what}: max |diff| {diff:e} exceeds {tol:e}");
}

/// A `[rows, len]` int tensor of the given ids.
pub fn ids_tensor(rows: &[Vec<i64>]) -> Tensor<TestBackend, 2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows.concat();
    let data = burn::tensor::TensorData::new(flat, [rows.len(), len]);
    Tensor::from_data(data, &device())
}

/// A `[batch, len]` int tensor as rows of i64.
pub fn rows(x: &Tensor<TestBackend, 2, Int>) -> Vec<Vec<i64>> {
    let [_, len] = x.dims();
    let values: Vec<i64> = x.to_data().iter::<i64>().collect();
    values.chunks(len).map(<[i64]>::to_vec).collect()
}
