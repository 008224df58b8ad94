//! Test support shared by the vlm crates (a dev-dependency only).
//!
//! The reference fixtures under `data/fixtures/` are written by `tools/reference/make_fixtures.py`
//! from Hugging Face transformers and peft; tests compare our outputs with them through
//! [`assert_close`] on [`TestBackend`].
//!
//! [`TestBackend`] is the programs' default CPU backend (`Flex`) unless the `wgpu` feature is
//! on: then it is Burn's `Wgpu` backend, so that the same tests run the GPU code path (CI runs
//! the parity tests that way on Mesa's lavapipe, a Vulkan driver on the CPU, and checks the
//! adapter's name through `VLM_TEST_WGPU_ADAPTER`). The tests keep their bounds on that path:
//! on lavapipe every parity difference stays within the CPU bound.

pub mod gradcheck;

use std::path::PathBuf;

use burn::tensor::Tensor;

/// The backend every numeric test runs on, f32: the default CPU backend of the programs.
#[cfg(not(feature = "wgpu"))]
pub type TestBackend = burn::backend::Flex<f32>;

/// The backend every numeric test runs on, f32: Burn's Wgpu backend (the `wgpu` feature is
/// on), unfused like the programs' (`vlm::backend`: Burn 0.21's fusion breaks one-token
/// forwards).
#[cfg(feature = "wgpu")]
pub type TestBackend =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

/// The device of [`TestBackend`].
#[cfg(not(feature = "wgpu"))]
pub fn device() -> burn::tensor::Device<TestBackend> {
    Default::default()
}

/// The device of [`TestBackend`]: the default wgpu device, set up on first use (see
/// [`wgpu_adapter`]). Tests must take their device from here rather than
/// `Default::default()`, so that the setup (and its adapter check) comes first.
#[cfg(feature = "wgpu")]
pub fn device() -> burn::tensor::Device<TestBackend> {
    wgpu_adapter();
    Default::default()
}

/// The environment variable that names the adapter the `wgpu` tests must run on: when set, the
/// first [`device`] call panics unless the adapter's name contains its value (CI sets
/// `llvmpipe`, lavapipe's adapter), so a silent fallback to another adapter cannot pass.
#[cfg(feature = "wgpu")]
pub const WGPU_ADAPTER_ENV: &str = "VLM_TEST_WGPU_ADAPTER";

/// Sets up the default wgpu device once per process (the platform's primary graphics API,
/// Vulkan on Linux) and returns its adapter as `name (backend, device type, driver)`, also
/// printed to stderr the first time. Panics if [`WGPU_ADAPTER_ENV`] is set and the adapter's
/// name does not contain it.
#[cfg(feature = "wgpu")]
pub fn wgpu_adapter() -> &'static str {
    use burn::backend::wgpu::{graphics::AutoGraphicsApi, init_setup, RuntimeOptions, WgpuDevice};
    static ADAPTER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ADAPTER.get_or_init(|| {
        let setup =
            init_setup::<AutoGraphicsApi>(&WgpuDevice::DefaultDevice, RuntimeOptions::default());
        let info = setup.adapter.get_info();
        let adapter = format!(
            "{} ({:?}, {:?}, driver {} {})",
            info.name, info.backend, info.device_type, info.driver, info.driver_info
        );
        eprintln!("vlm-testkit: wgpu adapter {adapter}");
        if let Ok(expected) = std::env::var(WGPU_ADAPTER_ENV) {
            assert!(
                info.name.contains(&expected),
                "wgpu adapter {adapter} is not the one {WGPU_ADAPTER_ENV} names ({expected})"
            );
        }
        adapter
    })
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
