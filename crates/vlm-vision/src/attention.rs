use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{backend::Backend, Tensor};
use vlm_hf::apply_linear;
use vlm_hf::HfError;

use crate::vit::VitDims;
use crate::weights::TowerWeights;

/// Bidirectional multi-head self-attention of a ViT layer (`self_attn`): q/k/v/out
/// projections with bias, softmax(q k^T / sqrt(head_dim)) v, no mask.
///
/// Runs through Burn's fused `attention` op, so GPU backends may use flash attention.
#[derive(Module, Debug)]
pub struct VitAttention<B: Backend> {
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    out_proj: Linear<B>,
    num_heads: usize,
}

impl<B: Backend> VitAttention<B> {
    /// Reads `{q,k,v,out}_proj.{weight,bias}` of one layer's `self_attn`.
    pub(crate) fn load(weights: &TowerWeights<'_, B>, dims: &VitDims) -> Result<Self, HfError> {
        let d = dims.hidden_size;
        Ok(Self {
            q_proj: weights.linear("q_proj", d, d)?,
            k_proj: weights.linear("k_proj", d, d)?,
            v_proj: weights.linear("v_proj", d, d)?,
            out_proj: weights.linear("out_proj", d, d)?,
            num_heads: dims.num_attention_heads,
        })
    }

    /// `[batch, tokens, hidden]` -> `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, tokens, hidden] = x.dims();
        let q = self.split_heads(apply_linear(&self.q_proj, x.clone()));
        let k = self.split_heads(apply_linear(&self.k_proj, x.clone()));
        let v = self.split_heads(apply_linear(&self.v_proj, x));
        let context = attention(q, k, v, None, None, AttentionModuleOptions::default());
        let merged = context.swap_dims(1, 2).reshape([batch, tokens, hidden]);
        apply_linear(&self.out_proj, merged)
    }

    /// `[batch, tokens, hidden]` -> `[batch, heads, tokens, head_dim]`.
    fn split_heads(&self, x: Tensor<B, 3>) -> Tensor<B, 4> {
        let [batch, tokens, hidden] = x.dims();
        x.reshape([batch, tokens, self.num_heads, hidden / self.num_heads])
            .swap_dims(1, 2)
    }
}
