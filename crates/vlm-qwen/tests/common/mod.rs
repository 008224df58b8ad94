//! Shared by the integration tests: the committed reference inputs and masked comparison.

#![allow(dead_code)] // each test binary uses a different subset

use burn::tensor::{Int, Tensor};
use vlm_hf::WeightStore;
use vlm_qwen::QwenModel;
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};

/// The text fixtures whose `reference.safetensors` holds f32 logits of their own weights: as
/// transformers 4.57 and (`v5/`) 5.25 save them, RoPE plain, linear and YaRN.
pub const F32_FIXTURES: [&str; 11] = [
    "qwen2_tied",
    "qwen2_untied",
    "qwen3",
    "qwen_v1",
    "qwen2_rope_linear",
    "qwen2_rope_yarn",
    "v5/qwen2_tied",
    "v5/qwen2_untied",
    "v5/qwen3",
    "v5/qwen2_rope_linear",
    "v5/qwen2_rope_yarn",
];

/// Inputs and expected outputs of one model fixture.
pub struct Reference {
    pub input_ids: Tensor<TestBackend, 2, Int>,
    pub attention_mask: Tensor<TestBackend, 2, Int>,
    pub position_ids: Tensor<TestBackend, 2, Int>,
    pub store: WeightStore,
}

impl Reference {
    pub fn open(name: &str) -> Self {
        let store = WeightStore::open_file(fixture(name).join("reference.safetensors"))
            .expect("reference.safetensors");
        let dev = device();
        Self {
            input_ids: store.int("input_ids", &dev).expect("input_ids"),
            attention_mask: store.int("attention_mask", &dev).expect("attention_mask"),
            position_ids: store.int("position_ids", &dev).expect("position_ids"),
            store,
        }
    }

    pub fn float3(&self, key: &str) -> Tensor<TestBackend, 3> {
        self.store.float_any(key, &device()).expect(key)
    }
}

pub fn load_model(name: &str) -> QwenModel<TestBackend> {
    QwenModel::load(fixture(name), &device()).expect("fixture model loads")
}

/// Largest difference over the positions where `attention_mask` is 1 (padded positions hold
/// whatever Hugging Face computed there and are not compared).
pub fn masked_max_diff(
    actual: &Tensor<TestBackend, 3>,
    expected: &Tensor<TestBackend, 3>,
    attention_mask: &Tensor<TestBackend, 2, Int>,
) -> f32 {
    let dims = expected.dims();
    let padding = attention_mask
        .clone()
        .equal_elem(0)
        .unsqueeze_dim::<3>(2)
        .expand(dims);
    let actual = actual.clone().mask_where(padding, expected.clone());
    max_abs_diff(&actual, expected)
}

/// Asserts `masked_max_diff <= tol` and reports the measured difference.
pub fn assert_close_masked(
    what: &str,
    actual: &Tensor<TestBackend, 3>,
    expected: &Tensor<TestBackend, 3>,
    attention_mask: &Tensor<TestBackend, 2, Int>,
    tol: f32,
) {
    let diff = masked_max_diff(actual, expected, attention_mask);
    eprintln!("{what}: max |diff| on unmasked positions = {diff:e}");
    assert!(diff <= tol, "{what}: max |diff| {diff:e} exceeds {tol:e}");
}

/// Columns `range` of a `[batch, len]` tensor.
pub fn columns(
    x: &Tensor<TestBackend, 2, Int>,
    range: std::ops::Range<usize>,
) -> Tensor<TestBackend, 2, Int> {
    let [batch, _] = x.dims();
    x.clone().slice([0..batch, range])
}

/// A `[batch, len]` int tensor as rows of u32.
pub fn rows(x: &Tensor<TestBackend, 2, Int>) -> Vec<Vec<u32>> {
    let [_, len] = x.dims();
    let values: Vec<u32> = x.to_data().iter::<i64>().map(|v| v as u32).collect();
    values.chunks(len).map(<[u32]>::to_vec).collect()
}
