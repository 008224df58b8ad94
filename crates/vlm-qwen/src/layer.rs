//! One pre-norm decoder layer: attention and MLP, each behind an RMSNorm and a residual.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::HfError;
use vlm_lora::LoraLinear;

use crate::attention::QwenAttention;
use crate::cache::LayerCache;
use crate::load::Loader;
use crate::mlp::QwenMlp;
use crate::names::LayerNames;
use crate::norm::rms_norm;
use crate::rope::RopeTables;
use crate::QwenConfig;

/// A decoder layer, with Hugging Face Qwen2 field names.
#[derive(Module, Debug)]
pub struct QwenDecoderLayer<B: Backend> {
    /// Norm before attention (v1: `ln_1`).
    pub input_layernorm: RmsNorm<B>,
    /// Self-attention.
    pub self_attn: QwenAttention<B>,
    /// Norm before the MLP (v1: `ln_2`).
    pub post_attention_layernorm: RmsNorm<B>,
    /// Feed-forward block.
    pub mlp: QwenMlp<B>,
}

impl<B: Backend> QwenDecoderLayer<B> {
    /// Loads the layer whose tensors are named by `names`.
    pub(crate) fn load(
        loader: &Loader<'_, B>,
        names: &LayerNames,
        config: &QwenConfig,
    ) -> Result<Self, HfError> {
        let (hidden, eps) = (config.hidden_size, config.rms_norm_eps);
        Ok(Self {
            input_layernorm: loader.rms_norm(&names.input_norm(), hidden, eps)?,
            self_attn: QwenAttention::load(loader, names, config)?,
            post_attention_layernorm: loader.rms_norm(&names.post_attention_norm(), hidden, eps)?,
            mlp: QwenMlp::load(loader, names, config)?,
        })
    }

    /// Calls `visitor` with each projection and its module path.
    pub(crate) fn visit_linears(
        &self,
        names: &LayerNames,
        visitor: &mut dyn FnMut(&str, &LoraLinear<B>),
    ) {
        self.self_attn.visit_linears(names, visitor);
        self.mlp.visit_linears(names, visitor);
    }

    /// Applies `mapper` to each projection, with its module path.
    pub(crate) fn map_linears(
        self,
        names: &LayerNames,
        mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>,
    ) -> Self {
        Self {
            self_attn: self.self_attn.map_linears(names, mapper),
            mlp: self.mlp.map_linears(names, mapper),
            ..self
        }
    }

    /// Runs the layer on `[batch, seq, hidden]`.
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        bias: &Tensor<B, 4>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let attended = self.self_attn.forward(
            rms_norm(&self.input_layernorm, x.clone()),
            rope,
            bias,
            cache,
        );
        let x = x + attended;
        let fed = self
            .mlp
            .forward(rms_norm(&self.post_attention_layernorm, x.clone()));
        x + fed
    }
}
