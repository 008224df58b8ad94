//! Where each weight lives in a checkpoint: the only place that knows v1's names.
//!
//! A linear's prefix (`transformer.h.0.attn.c_attn`, `model.layers.0.mlp.up_proj`) is also its
//! module path as PEFT sees it, which LoRA targets match and adapter files key tensors by.

use crate::QwenVariant;

/// Prefix of the untied LM head (the same in every layout).
pub(crate) const LM_HEAD: &str = "lm_head";

/// The tensor-name scheme of a checkpoint.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Names {
    /// `transformer.wte`, `transformer.h.N.attn.c_attn` (fused qkv), `mlp.w1`/`w2`/`c_proj`.
    V1,
    /// `model.embed_tokens`, `model.layers.N.self_attn.q_proj`, `mlp.gate_proj`/...
    Hf,
}

impl Names {
    pub(crate) fn of(variant: QwenVariant) -> Self {
        match variant {
            QwenVariant::V1 => Self::V1,
            QwenVariant::Qwen2 | QwenVariant::Qwen3 => Self::Hf,
        }
    }

    pub(crate) fn embed_tokens(self) -> &'static str {
        match self {
            Self::V1 => "transformer.wte.weight",
            Self::Hf => "model.embed_tokens.weight",
        }
    }

    pub(crate) fn final_norm(self) -> &'static str {
        match self {
            Self::V1 => "transformer.ln_f.weight",
            Self::Hf => "model.norm.weight",
        }
    }

    /// The names inside decoder layer `index`.
    pub(crate) fn layer(self, index: usize) -> LayerNames {
        let prefix = match self {
            Self::V1 => format!("transformer.h.{index}"),
            Self::Hf => format!("model.layers.{index}"),
        };
        LayerNames {
            names: self,
            prefix,
        }
    }
}

/// Tensor names of one decoder layer.
pub(crate) struct LayerNames {
    names: Names,
    prefix: String,
}

impl LayerNames {
    fn at(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    fn key(&self, v1: &str, hf: &str) -> String {
        match self.names {
            Names::V1 => self.at(v1),
            Names::Hf => self.at(hf),
        }
    }

    pub(crate) fn input_norm(&self) -> String {
        self.key("ln_1.weight", "input_layernorm.weight")
    }

    pub(crate) fn post_attention_norm(&self) -> String {
        self.key("ln_2.weight", "post_attention_layernorm.weight")
    }

    /// Whether the layout stores query, key and value as one fused `c_attn` (v1).
    pub(crate) fn fuses_qkv(&self) -> bool {
        matches!(self.names, Names::V1)
    }

    /// v1's fused `[q_out + k_out + v_out, hidden]` projection (v1 only).
    pub(crate) fn c_attn(&self) -> String {
        self.at("attn.c_attn")
    }

    /// Query projection (Qwen2/3 only, which split the projections).
    pub(crate) fn q_proj(&self) -> String {
        self.at("self_attn.q_proj")
    }

    /// Key projection (Qwen2/3 only).
    pub(crate) fn k_proj(&self) -> String {
        self.at("self_attn.k_proj")
    }

    /// Value projection (Qwen2/3 only).
    pub(crate) fn v_proj(&self) -> String {
        self.at("self_attn.v_proj")
    }

    pub(crate) fn o_proj(&self) -> String {
        self.key("attn.c_proj", "self_attn.o_proj")
    }

    /// Per-head query norm (Qwen3 only, which uses the Hugging Face names).
    pub(crate) fn q_norm(&self) -> String {
        self.at("self_attn.q_norm.weight")
    }

    /// Per-head key norm (Qwen3 only, which uses the Hugging Face names).
    pub(crate) fn k_norm(&self) -> String {
        self.at("self_attn.k_norm.weight")
    }

    /// v1's `w2` is the gate (it goes through SiLU).
    pub(crate) fn gate_proj(&self) -> String {
        self.key("mlp.w2", "mlp.gate_proj")
    }

    /// v1's `w1` is the up projection.
    pub(crate) fn up_proj(&self) -> String {
        self.key("mlp.w1", "mlp.up_proj")
    }

    pub(crate) fn down_proj(&self) -> String {
        self.key("mlp.c_proj", "mlp.down_proj")
    }
}
