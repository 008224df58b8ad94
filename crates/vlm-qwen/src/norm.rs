//! RMSNorm as transformers' `Qwen2RMSNorm` computes it, whatever the weights' float type.

use burn::nn::RmsNorm;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

/// `gamma * x / rms(x)` over the last dimension, normalised in f32 and rounded back to `x`'s
/// type before the scale, as transformers does
/// (`weight * (x.to(f32) * rsqrt(mean(x^2) + eps)).to(dtype)`).
///
/// In f32 these are the operations of Burn's `RmsNorm::forward`; in a half type Burn's would
/// round `rms` to it and divide there, two roundings where transformers has one.
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    norm: &RmsNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let x = x.cast(FloatDType::F32);
    let rms = (x.clone().square().mean_dim(D - 1) + norm.epsilon).sqrt();
    (x / rms).cast(dtype) * norm.gamma.val().unsqueeze()
}
