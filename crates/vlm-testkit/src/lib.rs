//! Test support shared by the vlm crates (a dev-dependency only).
//!
//! The reference fixtures under `data/fixtures/` are written by `tools/reference/make_fixtures.py`
//! from Hugging Face transformers and peft; tests compare our outputs with them through
//! [`assert_close`] on the CPU [`TestBackend`].

pub mod gradcheck;

use std::path::PathBuf;

use burn::tensor::Tensor;

/// The backend every numeric test runs on: the default CPU backend of the programs, f32.
pub type TestBackend = burn::backend::Flex<f32>;

/// The device of [`TestBackend`].
pub fn device() -> burn::tensor::Device<TestBackend> {
    Default::default()
}

/// Absolute path of a committed reference fixture folder, e.g. `fixture("qwen2_tied")`.
pub fn fixture(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fixtures");
    root.join(name)
}

/// The folder of a published Hugging Face checkpoint's configs in `data/configs/`, named
/// `ORG--NAME` (`config.json`, and `preprocessor_config.json` for image models).
pub fn published_configs(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/configs");
    root.join(name)
}

/// Largest absolute element-wise difference between two tensors of the same shape.
pub fn max_abs_diff<const D: usize>(
    actual: &Tensor<TestBackend, D>,
    expected: &Tensor<TestBackend, D>,
) -> f32 {
    assert_eq!(actual.dims(), expected.dims(), "shape mismatch");
    (actual.clone() - expected.clone())
        .abs()
        .max()
        .into_scalar()
}

/// Asserts that two tensors have the same shape and differ by at most `tol` anywhere.
///
/// The failure message names `what`, the worst difference and the tolerance.
pub fn assert_close<const D: usize>(
    what: &str,
    actual: &Tensor<TestBackend, D>,
    expected: &Tensor<TestBackend, D>,
    tol: f32,
) {
    let diff = max_abs_diff(actual, expected);
    assert!(
        diff <= tol,
        "{what}: max |actual - expected| = {diff:e} exceeds {tol:e} (shape {:?})",
        actual.dims()
    );
}
