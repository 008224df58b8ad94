//! The query/key/value input projections, kept in the checkpoint's own layout.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::HfError;
use vlm_lora::LoraLinear;

use crate::load::Loader;
use crate::names::LayerNames;
use crate::QwenConfig;

/// How one layer projects its input to queries, keys and values.
///
/// The layout follows the checkpoint so that a LoRA adapter means what it means in PEFT: v1's
/// fused `c_attn` takes ONE adapter (`A` `[r, hidden]` shared by query, key and value, `B`
/// `[q + k + v, r]`), while Qwen2/3's separate projections take one adapter each.
// One value per layer, built once: the size gap costs nothing, and Burn's Module derive does
// not support boxing the larger variant.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum QkvProjection<B: Backend> {
    /// v1's `c_attn`: `hidden -> q_out + k_out + v_out` in one linear.
    Fused(LoraLinear<B>),
    /// Qwen2/3's `q_proj`, `k_proj` and `v_proj`.
    Split(SplitQkv<B>),
}

/// Separate query, key and value projections (Qwen2/3).
#[derive(Module, Debug)]
pub struct SplitQkv<B: Backend> {
    /// Query projection, `hidden -> heads * head_dim`.
    pub q_proj: LoraLinear<B>,
    /// Key projection, `hidden -> kv_heads * head_dim`.
    pub k_proj: LoraLinear<B>,
    /// Value projection, `hidden -> kv_heads * head_dim`.
    pub v_proj: LoraLinear<B>,
}

impl<B: Backend> QkvProjection<B> {
    /// Loads the projections of one layer in the layout its names use.
    pub(crate) fn load(
        loader: &Loader<'_, B>,
        names: &LayerNames,
        config: &QwenConfig,
    ) -> Result<Self, HfError> {
        let hidden = config.hidden_size;
        let q_out = config.num_attention_heads * config.head_dim;
        let kv_out = config.num_key_value_heads * config.head_dim;
        let bias = config.qkv_bias;
        if names.fuses_qkv() {
            let c_attn = loader.adaptable(&names.c_attn(), hidden, q_out + 2 * kv_out, bias)?;
            return Ok(Self::Fused(c_attn));
        }
        Ok(Self::Split(SplitQkv {
            q_proj: loader.adaptable(&names.q_proj(), hidden, q_out, bias)?,
            k_proj: loader.adaptable(&names.k_proj(), hidden, kv_out, bias)?,
            v_proj: loader.adaptable(&names.v_proj(), hidden, kv_out, bias)?,
        }))
    }

    /// Projects `[batch, seq, hidden]` to queries `[batch, seq, q_out]` and keys and values
    /// `[batch, seq, kv_out]`.
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        q_out: usize,
        kv_out: usize,
    ) -> [Tensor<B, 3>; 3] {
        match self {
            Self::Fused(c_attn) => {
                let qkv = c_attn.forward(x);
                [
                    qkv.clone().narrow(2, 0, q_out),
                    qkv.clone().narrow(2, q_out, kv_out),
                    qkv.narrow(2, q_out + kv_out, kv_out),
                ]
            }
            Self::Split(split) => [
                split.q_proj.forward(x.clone()),
                split.k_proj.forward(x.clone()),
                split.v_proj.forward(x),
            ],
        }
    }

    /// Calls `visitor` with each projection and its module path.
    pub(crate) fn visit_linears(
        &self,
        names: &LayerNames,
        visitor: &mut dyn FnMut(&str, &LoraLinear<B>),
    ) {
        match self {
            Self::Fused(c_attn) => visitor(&names.c_attn(), c_attn),
            Self::Split(split) => {
                visitor(&names.q_proj(), &split.q_proj);
                visitor(&names.k_proj(), &split.k_proj);
                visitor(&names.v_proj(), &split.v_proj);
            }
        }
    }

    /// Applies `mapper` to each projection, with its module path.
    pub(crate) fn map_linears(
        self,
        names: &LayerNames,
        mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>,
    ) -> Self {
        match self {
            Self::Fused(c_attn) => Self::Fused(mapper(&names.c_attn(), c_attn)),
            Self::Split(split) => Self::Split(SplitQkv {
                q_proj: mapper(&names.q_proj(), split.q_proj),
                k_proj: mapper(&names.k_proj(), split.k_proj),
                v_proj: mapper(&names.v_proj(), split.v_proj),
            }),
        }
    }
}
