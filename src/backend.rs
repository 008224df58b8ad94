//! The backend the example programs and benches run on, chosen by Cargo feature.
//!
//! | feature          | [`Inference`]            | notes                                        |
//! |------------------|--------------------------|----------------------------------------------|
//! | `cuda`           | `CubeBackend<CudaRuntime>` | NVIDIA GPUs (CubeCL CUDA runtime), unfused |
//! | `wgpu`           | `CubeBackend<WgpuRuntime>` | Vulkan / Metal / DX12 GPUs, unfused        |
//! | `ndarray`        | `burn::backend::NdArray` | the other CPU backend                        |
//! | `flex` (default) | `burn::backend::Flex`    | CPU; the faster one here (README, benches)   |
//!
//! When several are enabled (the default `flex` plus another, or `--all-features` for
//! type-checking), the first in this table wins. This module is the only place in the project
//! that looks at backend features (the tests pick theirs with `vlm-testkit`'s `wgpu` feature).
//!
//! The GPU backends are Burn's CubeCL backends *without* the fusion layer that
//! `burn::backend::Wgpu` and `burn::backend::Cuda` wrap them in: under Burn 0.21's fusion a
//! one-token forward of the Qwen model (every KV-cached decode step) computes wrong keys (the
//! logits differ from the full forward by up to 4.5 on Wgpu; README "Backends"), while the
//! unfused backend matches transformers within 3e-6.

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;

#[cfg(feature = "cuda")]
/// Backend for inference (no autodiff).
pub type Inference = burn_cubecl::CubeBackend<cubecl_cuda::CudaRuntime, f32, i32, u8>;

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
/// Backend for inference (no autodiff).
pub type Inference =
    burn::backend::wgpu::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>;

#[cfg(all(feature = "ndarray", not(any(feature = "cuda", feature = "wgpu"))))]
/// Backend for inference (no autodiff).
pub type Inference = burn::backend::NdArray;

#[cfg(all(
    feature = "flex",
    not(any(feature = "cuda", feature = "wgpu", feature = "ndarray"))
))]
/// Backend for inference (no autodiff).
pub type Inference = burn::backend::Flex;

#[cfg(not(any(
    feature = "cuda",
    feature = "wgpu",
    feature = "flex",
    feature = "ndarray"
)))]
compile_error!("vlm needs one backend feature: flex (default), ndarray, wgpu or cuda");

/// Whether this build's backend computes half types natively (the GPU backends): a model
/// stored in bf16 or f16 then loads in that type by default (`vlm_hf::Precision::default_for`,
/// where the device supports it); the CPU backends load it in f32 unless `--dtype` asks.
pub const NATIVE_HALF: bool = cfg!(any(feature = "cuda", feature = "wgpu"));

/// Backend for training: [`Inference`] with reverse-mode autodiff.
pub type Train = Autodiff<Inference>;

/// [`Train`] with gradient checkpointing (`--gradient-checkpointing`): Burn's balanced
/// strategy keeps the outputs of compute-bound operations (matmuls) for the backward pass but
/// recomputes those of memory-bound ones (element-wise ops, activations, norms) from their
/// inputs when the backward pass needs them, so fewer activations stay alive.
pub type CheckpointedTrain = Autodiff<Inference, BalancedCheckpointing>;

/// The default device of the selected backend (the first GPU, or the CPU).
pub fn device() -> burn::tensor::Device<Inference> {
    Default::default()
}

/// The device a `--devices` entry names (one data-parallel peer each): `cuda:N` with `cuda`,
/// `gpu:N` (the N-th discrete GPU) with `wgpu`, `cpu` on the CPU backends; no index means 0.
pub fn device_named(spec: &str) -> Result<burn::tensor::Device<Inference>, String> {
    let (kind, index) = match spec.trim().split_once(':') {
        Some((kind, index)) => {
            let index = index
                .parse()
                .map_err(|_| format!("device {spec:?}: {index:?} is not an index"))?;
            (kind, index)
        }
        None => (spec.trim(), 0),
    };
    named(kind, index).ok_or_else(|| format!("device {spec:?}: this build takes {DEVICE_NAMES}"))
}

#[cfg(feature = "cuda")]
const DEVICE_NAMES: &str = "cuda:N";
#[cfg(feature = "cuda")]
fn named(kind: &str, index: usize) -> Option<burn::tensor::Device<Inference>> {
    (kind == "cuda").then_some(burn::backend::cuda::CudaDevice { index })
}

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
const DEVICE_NAMES: &str = "gpu:N";
#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
fn named(kind: &str, index: usize) -> Option<burn::tensor::Device<Inference>> {
    (kind == "gpu").then_some(burn::backend::wgpu::WgpuDevice::DiscreteGpu(index))
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
const DEVICE_NAMES: &str = "cpu";
#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn named(kind: &str, index: usize) -> Option<burn::tensor::Device<Inference>> {
    (kind == "cpu" && index == 0).then(Default::default)
}

/// Checks that `dev` can run kernels before anything is loaded onto it, so that a program reports
/// a missing GPU, driver or toolkit as an error instead of a panic inside the backend on first
/// use. Always `Ok` on the CPU backends; `wgpu` is not checked (it finds its adapter on first use).
/// With `cuda` (all loaded at run time, none linked): the driver library `libcuda.so`, the device
/// index, NVRTC (`libnvrtc.so`, which compiles the kernels) and the CUDA toolkit folder whose
/// headers NVRTC includes (`CUDA_PATH`, else `/usr/local/cuda`, `/opt/cuda`, or `/usr` with
/// `/usr/bin/nvcc`).
pub fn check_device(dev: &burn::tensor::Device<Inference>) -> Result<(), String> {
    check(dev)
}

#[cfg(feature = "cuda")]
fn check(dev: &burn::backend::cuda::CudaDevice) -> Result<(), String> {
    const CPU: &str = "this build (--features cuda) runs only on NVIDIA GPUs; the default \
                       build runs on the CPU";
    // SAFETY: only opens the library (dlopen) to see that it exists; calls nothing in it.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(format!(
            "no CUDA driver: libcuda.so cannot be loaded (no NVIDIA driver installed, or its \
             library is not on LD_LIBRARY_PATH); {CPU}"
        ));
    }
    let count = cudarc::driver::CudaContext::device_count()
        .map_err(|err| format!("the CUDA driver finds no usable GPU ({err}); {CPU}"))?;
    if dev.index >= count as usize {
        return Err(format!(
            "cuda:{} does not exist: the CUDA driver sees {count} GPU(s)",
            dev.index
        ));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(
            "NVRTC (libnvrtc.so, from the CUDA toolkit), which compiles the GPU \
                    kernels at run time, cannot be loaded: install the CUDA toolkit or put \
                    its lib folder on LD_LIBRARY_PATH"
                .into(),
        );
    }
    if cubecl_cuda::install::cuda_path().is_none() {
        return Err(
            "no CUDA toolkit found (its headers are needed to compile the GPU \
                    kernels): set CUDA_PATH to its folder (default /usr/local/cuda)"
                .into(),
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn check(_: &burn::tensor::Device<Inference>) -> Result<(), String> {
    Ok(())
}
