use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor};
use vlm_hf::apply_linear;
use vlm_hf::HfError;

use crate::vit::VitDims;
use crate::weights::TowerWeights;
use crate::Activation;

/// The feed-forward block of a ViT layer (`mlp`): `fc2(act(fc1(x)))`, both with bias.
#[derive(Module, Debug)]
pub struct VitMlp<B: Backend> {
    fc1: Linear<B>,
    fc2: Linear<B>,
    activation: Activation,
}

impl<B: Backend> VitMlp<B> {
    /// Reads `fc1` `[intermediate, hidden]` and `fc2` `[hidden, intermediate]` of one layer.
    pub(crate) fn load(weights: &TowerWeights<'_, B>, dims: &VitDims) -> Result<Self, HfError> {
        Ok(Self {
            fc1: weights.linear("fc1", dims.hidden_size, dims.intermediate_size)?,
            fc2: weights.linear("fc2", dims.intermediate_size, dims.hidden_size)?,
            activation: dims.hidden_act,
        })
    }

    /// `[batch, tokens, hidden]` -> `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let hidden = self.activation.forward(apply_linear(&self.fc1, x));
        apply_linear(&self.fc2, hidden)
    }
}
