use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorCreationOptions};
use vlm_hf::apply_linear;
use vlm_hf::{join_key, WeightStore};

use super::linear::{in_dtype_of, init_linear, linear_dims};
use super::{
    check_input_width, PersistentProjector, Projector, ProjectorConfig, ProjectorKind,
    HF_PROJECTOR_PREFIX,
};
use crate::ModelError;

/// llava-hf's name of the one linear below [`HF_PROJECTOR_PREFIX`].
const LINEAR: &str = "linear";

/// nanoVLM's modality projector: a pixel shuffle that concatenates each `s x s` square of
/// neighbouring patches into one token of width `vision_dim * s^2`, then one Linear without
/// bias to the language model's width.
///
/// An image becomes `s^2` times fewer tokens (a 24 x 24 grid with `s = 2` gives 144 instead of
/// 576), which shortens prompts at the cost of a wider linear. The encoder's tokens must form a
/// square grid whose side `s` divides ([`ModelError::PatchGrid`] otherwise). Its weight is
/// `multi_modal_projector.linear.weight`, `[output_dim, input_dim * s^2]`.
#[derive(Module, Debug)]
pub struct PixelShuffleProjector<B: Backend> {
    linear: Linear<B>,
    scale_factor: usize,
}

impl<B: Backend> PixelShuffleProjector<B> {
    /// A new projector to train: weights drawn from N(0, 0.01^2).
    pub fn new(
        input_dim: usize,
        output_dim: usize,
        scale_factor: usize,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let merged = merged_width(input_dim, scale_factor)?;
        Ok(Self {
            linear: init_linear(merged, output_dim, false, device),
            scale_factor,
        })
    }

    /// Reads `multi_modal_projector.linear.weight` of exactly these sizes.
    pub fn from_store(
        store: &WeightStore,
        input_dim: usize,
        output_dim: usize,
        scale_factor: usize,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, ModelError> {
        let merged = merged_width(input_dim, scale_factor)?;
        let prefix = join_key(HF_PROJECTOR_PREFIX, LINEAR);
        Ok(Self {
            linear: store.linear(&prefix, [merged, output_dim], false, options)?,
            scale_factor,
        })
    }

    /// `[images, side * side, dim]` to `[images, (side / s)^2, dim * s^2]`, row-major over the
    /// grid, each token holding its `s x s` patches row by row (nanoVLM's order).
    fn shuffle(&self, features: Tensor<B, 3>) -> Result<Tensor<B, 3>, ModelError> {
        let [images, tokens, dim] = features.dims();
        let s = self.scale_factor;
        let out = grid_side(tokens, s)? / s;
        Ok(features
            .reshape([images, out, s, out, s, dim])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([images, out * out, dim * s * s]))
    }
}

impl<B: Backend> Projector<B> for PixelShuffleProjector<B> {
    fn forward(&self, features: Tensor<B, 3>) -> Result<Tensor<B, 3>, ModelError> {
        check_input_width(&features, self.input_dim(), "the pixel-shuffle projector")?;
        let shuffled = in_dtype_of(self.shuffle(features)?, &self.linear);
        Ok(apply_linear(&self.linear, shuffled))
    }

    fn input_dim(&self) -> usize {
        linear_dims(&self.linear)[0] / (self.scale_factor * self.scale_factor)
    }

    fn output_dim(&self) -> usize {
        linear_dims(&self.linear)[1]
    }

    fn output_tokens(&self, input_tokens: usize) -> Result<usize, ModelError> {
        let out = grid_side(input_tokens, self.scale_factor)? / self.scale_factor;
        Ok(out * out)
    }
}

impl<B: Backend> PersistentProjector<B> for PixelShuffleProjector<B> {
    fn config(&self) -> ProjectorConfig {
        ProjectorConfig {
            kind: ProjectorKind::PixelShuffle {
                scale_factor: self.scale_factor,
            },
            input_dim: self.input_dim(),
            output_dim: self.output_dim(),
        }
    }

    fn linears(&self) -> Vec<(&'static str, &Linear<B>)> {
        vec![(LINEAR, &self.linear)]
    }
}

/// Width of a merged token; the scale factor must be at least 1.
fn merged_width(input_dim: usize, scale_factor: usize) -> Result<usize, ModelError> {
    if scale_factor == 0 {
        return Err(ModelError::InvalidInput(
            "a pixel-shuffle scale factor must be at least 1".into(),
        ));
    }
    Ok(input_dim * scale_factor * scale_factor)
}

/// Side of the square grid of `tokens` patches, which `scale_factor` must divide.
fn grid_side(tokens: usize, scale_factor: usize) -> Result<usize, ModelError> {
    let side = tokens.isqrt();
    if tokens == 0 || side * side != tokens || !side.is_multiple_of(scale_factor) {
        return Err(ModelError::PatchGrid {
            tokens,
            scale_factor,
        });
    }
    Ok(side)
}
