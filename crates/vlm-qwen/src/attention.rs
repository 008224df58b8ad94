//! Grouped-query self-attention with RoPE, optional per-head norms (Qwen3) and a KV cache.

use burn::module::Module;
use burn::nn::RmsNorm;
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, FloatDType, Tensor};
use vlm_hf::HfError;
use vlm_lora::LoraLinear;

use crate::cache::LayerCache;
use crate::load::Loader;
use crate::names::LayerNames;
use crate::norm::rms_norm;
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
    /// `bias` is `[batch, 1, seq, cached + seq]`, made by [`attention_bias`].
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rope: &RopeTables<B>,
        bias: &Tensor<B, 4>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, seq, _] = x.dims();
        let (q_out, kv_out) = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
        );
        let [q, k, v] = self.qkv.forward(x, q_out, kv_out);
        let q = self.heads(q, self.num_heads, &self.q_norm, Some(rope));
        let k = self.heads(k, self.num_kv_heads, &self.k_norm, Some(rope));
        let v = self.heads(v, self.num_kv_heads, &None, None);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        let context = self.scaled_dot_product(q, k, v, bias);
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
    /// first when a norm is given, then rotating it when RoPE tables are given (both before
    /// the swap, on the contiguous layout).
    fn heads(
        &self,
        x: Tensor<B, 3>,
        heads: usize,
        norm: &Option<RmsNorm<B>>,
        rope: Option<&RopeTables<B>>,
    ) -> Tensor<B, 4> {
        let [batch, seq, _] = x.dims();
        let x = x.reshape([batch, seq, heads, self.head_dim]);
        let x = match norm {
            Some(norm) => rms_norm(norm, x),
            None => x,
        };
        let x = match rope {
            Some(rope) => rope.apply(x),
            None => x,
        };
        x.swap_dims(1, 2)
    }

    /// `softmax(q k^T / sqrt(d) + bias) v` for queries `[batch, heads, seq, head_dim]` and keys
    /// and values `[batch, kv_heads, total, head_dim]`.
    ///
    /// Grouped-query attention without repeating the keys and values: query head
    /// `kv * groups + g` meets kv head `kv`, so each kv head's `groups` query heads are stacked
    /// as `groups * seq` rows (no copy of the cache per step).
    ///
    /// Inference in f32 runs Burn's fused `attention` op (one kernel for scores, bias, softmax
    /// and values on the CPU backend; backends without a kernel for a bias fall back to the
    /// same decomposed form); training (an autodiff backend) and half precision keep the
    /// decomposed form of [`Self::decomposed_attention`].
    fn scaled_dot_product(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        bias: &Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let [batch, heads, seq, dim] = q.dims();
        let [_, kv_heads, total, _] = k.dims();
        let groups = heads / kv_heads;
        let q = q.reshape([batch, kv_heads, groups * seq, dim]);
        let fused = q.dtype() == DType::F32 && !B::ad_enabled(&q.device());
        let context = if fused {
            let bias = bias
                .clone()
                .unsqueeze_dim::<5>(2)
                .expand([batch, 1, groups, seq, total])
                .reshape([batch, 1, groups * seq, total]);
            let scale = AttentionModuleOptions {
                scale: Some(self.scale()),
                ..Default::default()
            };
            attention(q, k, v, None, Some(bias), scale)
        } else {
            self.decomposed_attention(q, k, v, bias, groups)
        };
        context.reshape([batch, heads, seq, dim])
    }

    /// `1 / sqrt(head_dim)`.
    fn scale(&self) -> f64 {
        (self.head_dim as f64).powf(-0.5)
    }

    /// The attention of [`Self::scaled_dot_product`] as separate differentiable ops, for
    /// stacked queries `[batch, kv_heads, groups * seq, head_dim]`.
    ///
    /// The scores are in the inputs' float type; the bias and the softmax are in f32 and the
    /// probabilities go back to the inputs' type, as transformers' eager attention does
    /// (`softmax(..., dtype=float32).to(query.dtype)`); all casts are no-ops in f32.
    fn decomposed_attention(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
        bias: &Tensor<B, 4>,
        groups: usize,
    ) -> Tensor<B, 4> {
        let [batch, kv_heads, rows, _] = q.dims();
        let total = k.dims()[2];
        let seq = rows / groups;
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(self.scale())
            .reshape([batch, kv_heads, groups, seq, total]);
        let dtype = scores.dtype();
        let scores = scores.cast(FloatDType::F32) + bias.clone().unsqueeze_dim::<5>(1);
        softmax(scores, 4)
            .cast(dtype)
            .reshape([batch, kv_heads, rows, total])
            .matmul(v)
    }
}

/// The additive attention bias for `blocked` (`[batch, 1, seq, total]`, `true` = may not
/// attend): 0 where attending is allowed, half the float type's most negative finite value
/// where not.
///
/// Same result as Hugging Face's eager attention, which fills blocked scores with the minimum:
/// a blocked weight is exactly 0 after the softmax, and a fully blocked row (a padding query)
/// stays finite and uniform. Half the minimum cannot overflow to `-inf` when added to a score;
/// an addition with a broadcast bias is also much cheaper on CPU backends than `mask_fill`
/// with a broadcast mask, forward and backward.
pub(crate) fn attention_bias<B: Backend>(blocked: Tensor<B, 4, Bool>) -> Tensor<B, 4> {
    let zeros = Tensor::<B, 4>::zeros(blocked.dims(), &blocked.device());
    let lowest = zeros
        .dtype()
        .finfo()
        .map_or(f64::from(f32::MIN), |info| info.min);
    zeros.mask_fill(blocked, lowest / 2.0)
}
