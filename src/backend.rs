//! The backend the example programs and benches run on, chosen by Cargo feature.
//!
//! | feature          | [`Inference`]            | notes                                        |
//! |------------------|--------------------------|----------------------------------------------|
//! | `cuda`           | `burn::backend::Cuda`    | NVIDIA GPUs (CubeCL CUDA runtime)            |
//! | `wgpu`           | `burn::backend::Wgpu`    | Vulkan / Metal / DX12 GPUs                   |
//! | `ndarray`        | `burn::backend::NdArray` | the other CPU backend                        |
//! | `flex` (default) | `burn::backend::Flex`    | CPU; the faster one here (README, benches)   |
//!
//! When several are enabled (the default `flex` plus another, or `--all-features` for
//! type-checking), the first in this table wins. This module is the only place in the project
//! that looks at backend features.

use burn::backend::Autodiff;

#[cfg(feature = "cuda")]
/// Backend for inference (no autodiff).
pub type Inference = burn::backend::Cuda;

#[cfg(all(feature = "wgpu", not(feature = "cuda")))]
/// Backend for inference (no autodiff).
pub type Inference = burn::backend::Wgpu;

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

/// Backend for training: [`Inference`] with reverse-mode autodiff.
pub type Train = Autodiff<Inference>;

/// The default device of the selected backend (the first GPU, or the CPU).
pub fn device() -> burn::tensor::Device<Inference> {
    Default::default()
}
