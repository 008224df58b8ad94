//! The decoder stack: token embedding, decoder layers and the final norm.

use burn::module::Module;
use burn::nn::{Embedding, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_hf::HfError;

use crate::attention::attention_bias;
use crate::cache::KvCache;
use crate::layer::QwenDecoderLayer;
use crate::load::Loader;
use crate::mask::blocked_keys;
use crate::names::Names;
use crate::norm::rms_norm;
use crate::rope::RotaryEmbedding;
use crate::QwenConfig;

/// Everything of a Qwen model below the LM head (Hugging Face's `Qwen2Model`), with Hugging
/// Face field names (`model.layers.N.self_attn`).
#[derive(Module, Debug)]
pub struct QwenDecoder<B: Backend> {
    /// Token embedding table `[vocab, hidden]` (v1: `transformer.wte`).
    pub embed_tokens: Embedding<B>,
    /// The decoder layers (v1: `transformer.h`).
    pub layers: Vec<QwenDecoderLayer<B>>,
    /// Final norm (v1: `transformer.ln_f`).
    pub norm: RmsNorm<B>,
    /// RoPE frequencies shared by every layer.
    pub rotary_emb: RotaryEmbedding<B>,
}

impl<B: Backend> QwenDecoder<B> {
    /// Loads the stack, one tensor at a time.
    pub(crate) fn load(loader: &Loader<'_, B>, config: &QwenConfig) -> Result<Self, HfError> {
        let names = Names::of(config.variant);
        let (vocab, hidden) = (config.vocab_size, config.hidden_size);
        let embed_tokens = loader.embedding(names.embed_tokens(), vocab, hidden)?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| QwenDecoderLayer::load(loader, &names.layer(index), config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            embed_tokens,
            layers,
            norm: loader.rms_norm(names.final_norm(), hidden, config.rms_norm_eps)?,
            rotary_emb: RotaryEmbedding::new(
                config.head_dim,
                config.rope_theta,
                &config.rope_scaling,
                loader.device(),
            ),
        })
    }

    /// Runs every layer on `embeds` (`[batch, seq, hidden]`) and applies the final norm.
    ///
    /// Inputs must already be consistent: `attention_mask` `[batch, cached + seq]`,
    /// `position_ids` `[batch, seq]`, `cache` made for this many layers.
    pub(crate) fn forward(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Tensor<B, 2, Int>,
        position_ids: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [_, seq, _] = embeds.dims();
        let rope = self.rotary_emb.tables(position_ids);
        let bias = attention_bias(blocked_keys(attention_mask, seq));
        let mut layer_caches = cache.map(KvCache::layers_mut);
        let mut x = embeds;
        for layer in &self.layers {
            let layer_cache = layer_caches.as_mut().and_then(Iterator::next);
            x = layer.forward(x, &rope, &bias, layer_cache);
        }
        rms_norm(&self.norm, x)
    }
}
