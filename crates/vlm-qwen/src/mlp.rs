//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::HfError;

use crate::load::Loader;
use crate::names::LayerNames;
use crate::QwenConfig;

/// Feed-forward block of one decoder layer, with Hugging Face Qwen2 field names.
#[derive(Module, Debug)]
pub struct QwenMlp<B: Backend> {
    /// `hidden -> intermediate`, goes through SiLU (v1: `mlp.w2`).
    pub gate_proj: Linear<B>,
    /// `hidden -> intermediate` (v1: `mlp.w1`).
    pub up_proj: Linear<B>,
    /// `intermediate -> hidden` (v1: `mlp.c_proj`).
    pub down_proj: Linear<B>,
}

impl<B: Backend> QwenMlp<B> {
    /// Loads the MLP of one layer.
    pub(crate) fn load(
        loader: &Loader<'_, B>,
        names: &LayerNames,
        config: &QwenConfig,
    ) -> Result<Self, HfError> {
        let (hidden, inner, bias) = (
            config.hidden_size,
            config.intermediate_size,
            config.mlp_bias,
        );
        Ok(Self {
            gate_proj: loader.linear(&names.gate_proj(), hidden, inner, bias)?,
            up_proj: loader.linear(&names.up_proj(), hidden, inner, bias)?,
            down_proj: loader.linear(&names.down_proj(), inner, hidden, bias)?,
        })
    }

    /// Applies the block to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
