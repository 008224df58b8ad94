use burn::module::Module;
use burn::nn::LayerNorm;
use burn::tensor::{backend::Backend, Tensor};
use vlm_hf::HfError;

use crate::attention::VitAttention;
use crate::mlp::VitMlp;
use crate::vit::VitDims;
use crate::weights::TowerWeights;

/// One pre-norm transformer layer of CLIP and SigLIP (`encoder.layers.N`):
/// `x + attn(layer_norm1(x))`, then `x + mlp(layer_norm2(x))`.
#[derive(Module, Debug)]
pub struct VitLayer<B: Backend> {
    layer_norm1: LayerNorm<B>,
    self_attn: VitAttention<B>,
    layer_norm2: LayerNorm<B>,
    mlp: VitMlp<B>,
}

impl<B: Backend> VitLayer<B> {
    /// Reads the four sub-modules of one `encoder.layers.N`.
    pub(crate) fn load(weights: &TowerWeights<'_, B>, dims: &VitDims) -> Result<Self, HfError> {
        let norm = |name| weights.layer_norm(name, dims.hidden_size, dims.layer_norm_eps);
        Ok(Self {
            layer_norm1: norm("layer_norm1")?,
            self_attn: VitAttention::load(&weights.child("self_attn"), dims)?,
            layer_norm2: norm("layer_norm2")?,
            mlp: VitMlp::load(&weights.child("mlp"), dims)?,
        })
    }

    /// `[batch, tokens, hidden]` -> `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x));
        x.clone() + self.mlp.forward(self.layer_norm2.forward(x))
    }
}
