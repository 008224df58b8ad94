//! Rotary position embedding in Hugging Face's rotate-half convention.
//!
//! The head is split into two halves `[x1, x2]` that rotate together:
//! `x * cos + [-x2, x1] * sin`, with frequency `i` used at dimensions `i` and `i + d/2`.
//! (Burn's `RotaryEncoding` rotates interleaved pairs `(x0, x1), (x2, x3), ...` instead,
//! which does not match Qwen checkpoints.)

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

/// How a checkpoint stretches RoPE beyond its training length (`rope_type` of transformers'
/// `rope_scaling` / `rope_parameters`); the frequencies and cos/sin scale follow
/// `transformers.modeling_rope_utils` exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RopeScaling {
    /// `"default"`: plain RoPE.
    None,
    /// `"linear"`: every frequency divided by `factor` (positions interpolated).
    Linear {
        /// The interpolation factor (> 0).
        factor: f64,
    },
    /// `"yarn"`: low frequencies interpolated, high ones kept, a linear ramp between, and
    /// cos/sin multiplied by `attention_factor`.
    Yarn(YarnScaling),
}

/// The settings of YaRN scaling, with transformers' defaults already applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YarnScaling {
    /// The context extension factor (> 0).
    pub factor: f64,
    /// The context length the model was pretrained with.
    pub original_max_position_embeddings: usize,
    /// Rotations above which a frequency is kept (extrapolated); default 32.
    pub beta_fast: f64,
    /// Rotations below which a frequency is interpolated; default 1.
    pub beta_slow: f64,
    /// The scale of cos and sin (from `factor`, `mscale` and `mscale_all_dim` when the config
    /// gives none).
    pub attention_factor: f64,
    /// Whether the correction range is rounded outwards to whole dimensions; default true.
    pub truncate: bool,
}

impl RopeScaling {
    /// The inverse frequencies of a head of `head_dim` with base `theta`, and the factor cos
    /// and sin are multiplied by.
    fn frequencies(&self, head_dim: usize, theta: f64) -> (Vec<f64>, f64) {
        let plain = |i: usize| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
        let half = head_dim / 2;
        match self {
            Self::None => ((0..half).map(plain).collect(), 1.0),
            Self::Linear { factor } => ((0..half).map(|i| plain(i) / factor).collect(), 1.0),
            Self::Yarn(yarn) => (yarn.frequencies(head_dim, theta), yarn.attention_factor),
        }
    }
}

impl YarnScaling {
    /// transformers' `_compute_yarn_parameters`: interpolated frequencies below the
    /// correction range, extrapolated ones above it, a linear ramp inside.
    fn frequencies(&self, head_dim: usize, theta: f64) -> Vec<f64> {
        let dim = head_dim as f64;
        let original = self.original_max_position_embeddings as f64;
        let correction_dim = |rotations: f64| {
            dim * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * theta.ln())
        };
        let (mut low, mut high) = (
            correction_dim(self.beta_fast),
            correction_dim(self.beta_slow),
        );
        if self.truncate {
            (low, high) = (low.floor(), high.ceil());
        }
        let (low, high) = (low.max(0.0), high.min(dim - 1.0));
        let span = if low == high { 0.001 } else { high - low };
        (0..head_dim / 2)
            .map(|i| {
                let extrapolation = 1.0 / theta.powf((2 * i) as f64 / dim);
                let interpolation = extrapolation / self.factor;
                let keep = 1.0 - ((i as f64 - low) / span).clamp(0.0, 1.0);
                interpolation * (1.0 - keep) + extrapolation * keep
            })
            .collect()
    }
}

/// The RoPE inverse frequencies `theta^(-2i/d)` of one head size (scaled as the checkpoint
/// asks), and the scale of cos and sin.
#[derive(Module, Debug)]
pub struct RotaryEmbedding<B: Backend> {
    inv_freq: Tensor<B, 1>,
    attention_factor: f64,
}

/// Cosines and sines for one batch of positions, `[batch, seq, 1, head_dim]`.
#[derive(Debug, Clone)]
pub(crate) struct RopeTables<B: Backend> {
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// Frequencies for heads of `head_dim` (even) with base `theta`, scaled by `scaling`.
    pub fn new(head_dim: usize, theta: f64, scaling: &RopeScaling, device: &B::Device) -> Self {
        let (inv_freq, attention_factor) = scaling.frequencies(head_dim, theta);
        let inv_freq: Vec<f32> = inv_freq.into_iter().map(|f| f as f32).collect();
        let data = TensorData::new(inv_freq, [head_dim / 2]);
        Self {
            inv_freq: Tensor::from_data(data, device),
            attention_factor,
        }
    }

    /// The tables for `positions` (`[batch, seq]`).
    pub(crate) fn tables(&self, positions: Tensor<B, 2, Int>) -> RopeTables<B> {
        let [batch, seq] = positions.dims();
        let [half] = self.inv_freq.dims();
        let angles = positions.float().reshape([batch, seq, 1])
            * self.inv_freq.clone().reshape([1, 1, half]);
        let angles = Tensor::cat(vec![angles.clone(), angles], 2).unsqueeze_dim::<4>(2);
        let (cos, sin) = (angles.clone().cos(), angles.sin());
        if self.attention_factor == 1.0 {
            return RopeTables { cos, sin };
        }
        RopeTables {
            cos: cos.mul_scalar(self.attention_factor),
            sin: sin.mul_scalar(self.attention_factor),
        }
    }
}

impl<B: Backend> RopeTables<B> {
    /// Rotates `x` (`[batch, seq, heads, head_dim]`: the projections' own layout, contiguous,
    /// which CPU backends broadcast over much faster than a head-major view).
    ///
    /// The tables are computed in f32 and rounded to `x`'s float type, as transformers does.
    pub(crate) fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let dtype = x.dtype();
        let (cos, sin) = (self.cos.clone().cast(dtype), self.sin.clone().cast(dtype));
        x.clone() * cos + rotate_half(x) * sin
    }
}

/// `[x1, x2] -> [-x2, x1]` along the last dimension.
fn rotate_half<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    let [batch, seq, heads, dim] = x.dims();
    let x1 = x.clone().slice([0..batch, 0..seq, 0..heads, 0..dim / 2]);
    let x2 = x.slice([0..batch, 0..seq, 0..heads, dim / 2..dim]);
    Tensor::cat(vec![x2.neg(), x1], 3)
}
