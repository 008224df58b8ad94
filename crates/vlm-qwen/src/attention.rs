//! Grouped-query self-attention with RoPE, optional per-head norms (Qwen3) and a KV cache.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Tensor};
use vlm_hf::HfError;
use vlm_lora::LoraLinear;

use crate::cache::LayerCache;
use crate::load::Loader;
use crate::names::LayerNames;
use crate::qkv::QkvProjection;
use crate::rope::RopeTables;
use crate::QwenConfig;

/// Self-attention of one decoder layer.
///
/// The projections are [`LoraLinear`]s (plain linears until LoRA attaches an adapter); the
/// query/key/value projections keep the checkpoint's layout (see [`QkvProjection`]).
#[derive(Module, Debug)]
pub struct QwenAttention<B: Backend> {
    /// Query, key and value projections (v1: fused `c_attn`; Qwen2/3: `q_proj`, `k_proj`,
    /// `v_proj`).
    pub qkv: QkvProjection<B>,
    /// Output projection, `heads * head_dim -> hidden` (v1: `attn.c_proj`).
    pub o_proj: LoraLinear<B>,
    /// RMSNorm over each query head before RoPE (Qwen3 only).
    pub q_norm: Option<RmsNorm<B>>,
    /// RMSNorm over each key head before RoPE (Qwen3 only).
    pub k_norm: Option<RmsNorm<B>>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

impl<B: Backend> QwenAttention<B> {
    /// Loads the attention of one layer.
    pub(crate) fn load(
        loader: &Loader<'_, B>,
        names: &LayerNames,
        config: &QwenConfig,
    ) -> Result<Self, HfError> {
        let qkv = QkvProjection::load(loader, names, config)?;
        let q_out = config.num_attention_heads * config.head_dim;
        let o_proj = loader.adaptable(
            &names.o_proj(),
            q_out,
            config.hidden_size,
            config.o_proj_bias,
        )?;
        let head_norm = |key: String| loader.rms_norm(&key, config.head_dim, config.rms_norm_eps);
        let (q_norm, k_norm) = if config.qk_norm {
            (
                Some(head_norm(names.q_norm())?),
                Some(head_norm(names.k_norm())?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            qkv,
            o_proj,
            q_norm,
            k_norm,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_key_value_heads,
            head_dim: config.head_dim,
        })
    }

    /// Attends `x` (`[batch, seq, hidden]`) to the cached keys and itself.
    ///
    /// `blocked` is `[batch, 1, seq, cached + seq]` (`true` = may not attend).
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        blocked: &Tensor<B, 4, Bool>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (q_out, kv_out) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let [q, k, v] = self.qkv.forward(x, q_out, kv_out);
        let q = self.heads(q, self.num_heads, &self.q_norm);
        let k = self.heads(k, self.num_kv_heads, &self.k_norm);
        let v = self.heads(v, self.num_kv_heads, &None);
        let (q, k) = (rope.apply(q), rope.apply(k));
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let groups = self.num_heads / self.num_kv_heads;
        let context =
            self.scaled_dot_product(q, repeat_kv(k, groups), repeat_kv(v, groups), blocked);
        let context = context
            .swap_dims(1, 2)
            .reshape([batch, seq, self.num_heads * self.head_dim]);
        self.o_proj.forward(context)
    }

    /// Calls `visitor` with each projection and its module path.
    pub(crate) fn visit_linears(
        &self,
        names: &LayerNames,
        visitor: &mut dyn FnMut(&str, &LoraLinear<B>),
    ) {
        self.qkv.visit_linears(names, visitor);
        visitor(&names.o_proj(), &self.o_proj);
    }

    /// Applies `mapper` to each projection, with its module path.
    pub(crate) fn map_linears(
        self,
        names: &LayerNames,
        mapper: &mut dyn FnMut(&str, LoraLinear<B>) -> LoraLinear<B>,
    ) -> Self {
        Self {
            qkv: self.qkv.map_linears(names, mapper),
            o_proj: mapper(&names.o_proj(), self.o_proj),
            ..self
        }
    }

    /// `[batch, seq, heads * head_dim] -> [batch, heads, seq, head_dim]`, normalising each head
    /// first when a norm is given.
    fn heads(&self, x: Tensor<B, 3>, heads: usize, norm: &Option<RmsNorm<B>>) -> Tensor<B, 4> {
        let [batch, seq, _] = x.dims();
        let x = x.reshape([batch, seq, heads, self.head_dim]);
        let x = match norm {
            Some(norm) => norm.forward(x),
            None => x,
        };
        x.swap_dims(1, 2)
    }

    /// `softmax(q k^T / sqrt(d) + mask) v`, with blocked scores set to the dtype's most negative
    /// finite value as Hugging Face's eager attention does (fully blocked rows stay finite).
    fn scaled_dot_product(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        blocked: &Tensor<B, 4, Bool>,
    ) -> Tensor<B, 4> {
        let scale = (self.head_dim as f64).powf(-0.5);
        let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
        let [batch, heads, seq, total] = scores.dims();
        let lowest = scores
            .dtype()
            .finfo()
            .map_or(f64::from(f32::MIN), |info| info.min);
        let scores = scores.mask_fill(blocked.clone().expand([batch, heads, seq, total]), lowest);
        softmax(scores, 3).matmul(v)
    }
}

/// Repeats each key/value head `groups` times so that query head `h` meets kv head `h / groups`.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, groups: usize) -> Tensor<B, 4> {
    if groups == 1 {
        return x;
    }
    let [batch, kv_heads, len, dim] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([batch, kv_heads, groups, len, dim])
        .reshape([batch, kv_heads * groups, len, dim])
}
