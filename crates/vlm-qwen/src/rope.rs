//! Rotary position embedding in Hugging Face's rotate-half convention.
//!
//! The head is split into two halves `[x1, x2]` that rotate together:
//! `x * cos + [-x2, x1] * sin`, with frequency `i` used at dimensions `i` and `i + d/2`.
//! (Burn's `RotaryEncoding` rotates interleaved pairs `(x0, x1), (x2, x3), ...` instead,
//! which does not match Qwen checkpoints.)

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// The RoPE inverse frequencies `theta^(-2i/d)` of one head size.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    inv_freq: Tensor<B, 1>,
}

/// Cosines and sines for one batch of positions, `[batch, seq, 1, head_dim]`.
#[derive(Debug, Clone)]
pub(crate) struct RopeTables<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Frequencies for heads of `head_dim` (even) with base `theta`.
    pub fn new(head_dim: usize, theta: f64, device: &B::Device) -> Self {
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| (1.0 / theta.powf((2 * i) as f64 / head_dim as f64)) as f32)
            .collect();
        let data = TensorData::new(inv_freq, [head_dim / 2]);
        Self {
            inv_freq: Tensor::from_data(data, device),
        }
    }

    /// The tables for `positions` (`[batch, seq]`).
    pub(crate) fn tables(&self, positions: Tensor<B, 2, Int>) -> RopeTables<B> {
        let [batch, seq] = positions.dims();
        let [half] = self.inv_freq.dims();
        let angles = positions.float().reshape([batch, seq, 1])
            * self.inv_freq.clone().reshape([1, 1, half]);
        let angles = Tensor::cat(vec![angles.clone(), angles], 2).unsqueeze_dim::<4>(2);
        RopeTables {
            cos: angles.clone().cos(),
            sin: angles.sin(),
        }
    }
}

impl<B: Backend> RopeTables<B> {
    /// Rotates `x` (`[batch, seq, heads, head_dim]`: the projections' own layout, contiguous,
    /// which CPU backends broadcast over much faster than a head-major view).
    pub(crate) fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        x.clone() * self.cos.clone() + rotate_half(x) * self.sin.clone()
    }
}

/// `[x1, x2] -> [-x2, x1]` along the last dimension.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, seq, heads, dim] = x.dims();
    let x1 = x.clone().slice([0..batch, 0..seq, 0..heads, 0..dim / 2]);
    let x2 = x.slice([0..batch, 0..seq, 0..heads, dim / 2..dim]);
    Tensor::cat(vec![x2.neg(), x1], 3)
}
