use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use vlm_hf::HfError;

use crate::layer::VitLayer;
use crate::weights::TowerWeights;
use crate::{Activation, VisionError};

/// The sizes CLIP and SigLIP towers share, checked once so that no forward pass can divide
/// by zero or build a tensor of the wrong size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct VitDims {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: Activation,
    pub layer_norm_eps: f64,
}

impl VitDims {
    /// Rejects sizes no tower can have: zeros, a width the heads do not divide, a patch
    /// larger than the image.
    pub(crate) fn validated(self) -> Result<Self, VisionError> {
        let sizes = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_channels", self.num_channels),
            ("patch_size", self.patch_size),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, size)| *size == 0) {
            return invalid(name, "is 0".to_string());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return invalid(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            );
        }
        if self.image_size < self.patch_size {
            return invalid(
                "image_size",
                format!(
                    "{} is smaller than patch_size {}",
                    self.image_size, self.patch_size
                ),
            );
        }
        Ok(self)
    }

    /// Patches per image: the convolution tiles the image without padding.
    pub(crate) fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }
}

fn invalid<T>(field: &'static str, reason: String) -> Result<T, VisionError> {
    Err(VisionError::InvalidConfig { field, reason })
}

/// The stack of transformer layers (`encoder.layers.*`), able to stop after any layer.
#[derive(Module, Debug)]
pub struct VitEncoder<B: Backend> {
    layers: Vec<VitLayer<B>>,
}

impl<B: Backend> VitEncoder<B> {
    /// Reads `layers.0` to `layers.{num_hidden_layers - 1}`.
    pub(crate) fn load(weights: &TowerWeights<'_, B>, dims: &VitDims) -> Result<Self, HfError> {
        let layers = (0..dims.num_hidden_layers)
            .map(|i| VitLayer::load(&weights.child(&format!("layers.{i}")), dims))
            .collect::<Result<_, _>>()?;
        Ok(Self { layers })
    }

    /// Runs the first `count` layers only (`count` = a `hidden_states` index).
    pub fn forward(&self, x: Tensor<B, 3>, count: usize) -> Tensor<B, 3> {
        self.layers
            .iter()
            .take(count)
            .fold(x, |x, layer| layer.forward(x))
    }

    /// Hugging Face's `hidden_states` tuple: the input, then the output of every layer.
    pub fn hidden_states(&self, x: Tensor<B, 3>) -> Vec<Tensor<B, 3>> {
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        let mut current = x;
        for layer in &self.layers {
            let next = layer.forward(current.clone());
            states.push(current);
            current = next;
        }
        states.push(current);
        states
    }
}
