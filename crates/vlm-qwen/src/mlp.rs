//! The SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::HfError;
use vlm_lora::LoraLinear;

use crate::load::Loader;
use crate::names::LayerNames;
use crate::QwenConfig;

/// Feed-forward block of one decoder layer, with Hugging Face Qwen2 field names; the
/// projections are [`LoraLinear`]s (plain linears until LoRA attaches an adapter).
#[derive(Module, Debug)]
pub struct QwenMlp<B: Backend> {
    /// `hidden -> intermediate`, goes through SiLU (v1: `mlp.w2`).
    pub gate_proj: LoraLinear<B>,
    /// `hidden -> intermediate` (v1: `mlp.w1`).
    pub up_proj: LoraLinear<B>,
    /// `intermediate -> hidden` (v1: `mlp.c_proj`).
    pub down_proj: LoraLinear<B>,
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
            gate_proj: loader.adaptable(&names.gate_proj(), hidden, inner, bias)?,
            up_proj: loader.adaptable(&names.up_proj(), hidden, inner, bias)?,
            down_proj: loader.adaptable(&names.down_proj(), inner, hidden, bias)?,
        })
    }

    /// Calls `visitor` with each projection and its module path.
    pub(crate) fn visit_linears(
        &self,
        names: &LayerNames,
        visitor: &mut dyn FnMut(&str, &LoraLinear<B>),
    ) {
        visitor(&names.gate_proj(), &self.gate_proj);
        visitor(&names.up_proj(), &self.up_proj);
        visitor(&names.down_proj(), &self.down_proj);
    }

    /// Applies `mapper` to each projection, with its module path.
    pub(crate) fn map_linears(
        self,
        names: &LayerNames,
        mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>,
    ) -> Self {
        Self {
            gate_proj: mapper(&names.gate_proj(), self.gate_proj),
            up_proj: mapper(&names.up_proj(), self.up_proj),
            down_proj: mapper(&names.down_proj(), self.down_proj),
        }
    }

    /// Applies the block to `[batch, seq, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}
