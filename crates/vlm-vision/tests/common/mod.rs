//! Helpers shared by the integration tests: reference outputs and comparisons.

use burn::tensor::Tensor;
use vlm_hf::WeightStore;
use vlm_testkit::{device, fixture, max_abs_diff, TestBackend};

/// Largest tolerated difference to transformers' float32 outputs.
pub const TOL: f32 = 1e-4;

/// The `reference.safetensors` of a fixture folder.
pub fn reference(name: &str) -> WeightStore {
    WeightStore::open_file(fixture(name).join("reference.safetensors")).expect("reference file")
}

/// A float tensor of a reference file, whatever its sizes.
pub fn tensor<const D: usize>(reference: &WeightStore, key: &str) -> Tensor<TestBackend, D> {
    reference
        .float_any::<TestBackend, D>(key, &device())
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// Asserts `actual` is within [`TOL`] of `expected`, prints the difference and returns it.
pub fn check<const D: usize>(
    what: &str,
    actual: &Tensor<TestBackend, D>,
    expected: &Tensor<TestBackend, D>,
) -> f32 {
    let diff = max_abs_diff(actual, expected);
    eprintln!("{what}: max |diff| = {diff:e}");
    assert!(diff <= TOL, "{what}: max |diff| = {diff:e} exceeds {TOL:e}");
    diff
}
