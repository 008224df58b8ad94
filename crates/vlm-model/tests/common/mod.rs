//! Shared by the integration tests: the llava fixtures built into a VLM, their reference
//! outputs, and masked comparison.

#![allow(dead_code)] // each test binary uses a different subset

use burn::tensor::{Int, Tensor};
use vlm_hf::WeightStore;
use vlm_model::{load_llava_hf, QwenVlm, VlmBatch};
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};

/// A llava fixture's model and its reference outputs.
pub struct Llava {
    pub name: &'static str,
    pub model: QwenVlm<TestBackend>,
    pub reference: WeightStore,
}

impl Llava {
    /// The fixture's Hugging Face LLaVA checkpoint, loaded whole.
    pub fn load(name: &'static str) -> Self {
        let model = load_llava_hf(fixture(name), &device()).expect("load llava checkpoint");
        Self {
            name,
            model,
            reference: reference(name),
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
