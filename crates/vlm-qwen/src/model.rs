//! The Qwen causal language model: decoder stack plus LM head, loaded from a Hugging Face folder.

use std::path::Path;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorCreationOptions};
use vlm_hf::WeightStore;

use crate::cache::KvCache;
use crate::decoder::QwenDecoder;
use crate::head::{vocab_blocks, LmHead};
use crate::inputs::ForwardInputs;
use crate::load::{KeyMap, Loader};
use crate::names::LM_HEAD;
use crate::{QwenConfig, QwenError};

/// A Qwen v1, Qwen2/2.5 or Qwen3 causal LM (Hugging Face's `*ForCausalLM`).
///
/// Burn field names follow Hugging Face Qwen2 (`model.layers.N.self_attn`, `lm_head`); LoRA
/// targets the projections by the checkpoint's own module paths (see the
/// [`AdaptableModel`](vlm_lora::AdaptableModel) implementation).
#[derive(Module, Debug)]
pub struct QwenModel<B: Backend> {
    /// Embedding, decoder layers and final norm.
    pub model: QwenDecoder<B>,
    /// The output projection `hidden -> vocab`; `None` when tied to the token embedding.
    pub lm_head: Option<Linear<B>>,
    pub(crate) config: QwenConfig,
}

impl<B: Backend> QwenModel<B> {
    /// Loads `config.json` and the safetensors weights (single file or sharded, f32/bf16/f16)
    /// of a Hugging Face model folder onto a device: `options` is the device (weights in f32)
    /// or a device and dtype ([`vlm_hf::Precision::on`]), which the forward pass then
    /// computes in.
    pub fn load(
        dir: impl AsRef<Path>,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, QwenError> {
        let dir = dir.as_ref();
        let config = QwenConfig::from_file(dir.join("config.json"))?;
        let store = WeightStore::open_dir(dir)?;
        Self::from_store(&store, config, options)
    }

    /// Builds the model from already opened weights, reading one tensor at a time;
    /// `options` as in [`load`](Self::load).
    pub fn from_store(
        store: &WeightStore,
        config: QwenConfig,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, QwenError> {
        Self::build(&Loader::new(store, options.into()), config)
    }

    /// Builds the model from weights stored under other names, as inside a LLaVA checkpoint
    /// (with [`QwenConfig::from_file`] reading its `text_config`):
    ///
    /// - `decoder_prefix` replaces the decoder's own root (`model`; `transformer` for v1):
    ///   `language_model.model` in legacy llava-hf checkpoints, `model.language_model` in
    ///   those transformers 4.52 and later write;
    /// - `lm_head_key` replaces `lm_head.weight`: `language_model.lm_head.weight` (legacy) or
    ///   `lm_head.weight`; unused when the embeddings are tied.
    ///
    /// Errors name the keys as stored. Module paths (LoRA targets, [`save_merged`]) keep the
    /// checkpoint layout's own names.
    ///
    /// [`save_merged`]: Self::save_merged
    pub fn from_store_at(
        store: &WeightStore,
        config: QwenConfig,
        decoder_prefix: &str,
        lm_head_key: &str,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, QwenError> {
        let keys = KeyMap {
            decoder_prefix: decoder_prefix.to_string(),
            lm_head_key: lm_head_key.to_string(),
        };
        Self::build(&Loader::at(store, keys, options.into()), config)
    }

    fn build(loader: &Loader<'_, B>, config: QwenConfig) -> Result<Self, QwenError> {
        let model = QwenDecoder::load(loader, &config)?;
        let lm_head = if config.tie_word_embeddings {
            None
        } else {
            Some(loader.linear(LM_HEAD, config.hidden_size, config.vocab_size, false)?)
        };
        Ok(Self {
            model,
            lm_head,
            config,
        })
    }

    /// The architecture this model was built from.
    pub fn config(&self) -> &QwenConfig {
        &self.config
    }

    /// An empty KV cache for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.config.num_hidden_layers)
    }

    /// Token embeddings of `input_ids` (`[batch, seq]` -> `[batch, seq, hidden]`).
    ///
    /// Fails when an id is outside the vocabulary.
    pub fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, QwenError> {
        self.check_ids(&input_ids)?;
        Ok(self.model.embed_tokens.forward(input_ids))
    }

    /// Logits `[batch, seq, vocab]` for token ids; see [`forward_embeds`](Self::forward_embeds).
    pub fn forward(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        position_ids: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, QwenError> {
        let embeds = self.embed(input_ids)?;
        self.forward_embeds(embeds, attention_mask, position_ids, cache)
    }

    /// Logits `[batch, seq, vocab]` for input embeddings `[batch, seq, hidden]`.
    ///
    /// - `attention_mask`: `[batch, cached + seq]` of 0/1 (1 = real token), covering the cached
    ///   tokens too, as in Hugging Face; all ones when `None`. Attention is causal and skips
    ///   padding keys.
    /// - `position_ids`: `[batch, seq]`; when `None`, derived from the mask as Hugging Face
    ///   `generate()` does under left padding (`cumsum - 1`, pads at 1).
    /// - `cache`: when given, its keys and values are attended to and this pass's are appended,
    ///   so a decode step feeds only the new tokens.
    pub fn forward_embeds(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        position_ids: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, QwenError> {
        let hidden = self.forward_hidden(embeds, attention_mask, position_ids, cache)?;
        Ok(self.logits(hidden))
    }

    /// The last hidden state `[batch, seq, hidden]` (after the final norm, before the LM head);
    /// arguments as in [`forward_embeds`](Self::forward_embeds).
    pub fn forward_hidden(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        position_ids: Option<Tensor<B, 2, Int>>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, QwenError> {
        let inputs = ForwardInputs::resolve(
            &self.config,
            embeds.dims(),
            attention_mask,
            position_ids,
            cache.as_deref(),
            &embeds.device(),
        )?;
        Ok(self
            .model
            .forward(embeds, inputs.attention_mask, inputs.position_ids, cache))
    }

    /// Applies the LM head to hidden states `[batch, seq, hidden]` -> `[batch, seq, vocab]`,
    /// in the hidden states' float type (in a half type through [`blockwise_head`]).
    pub fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match (&self.lm_head, hidden.dtype()) {
            (Some(head), DType::F32) => head.forward(hidden),
            (None, DType::F32) => tied_head(hidden, self.model.embed_tokens.weight.val()),
            (Some(head), _) => {
                let logits = blockwise_head(hidden, head.weight.val());
                match &head.bias {
                    Some(bias) => logits + bias.val().unsqueeze(),
                    None => logits,
                }
            }
            (None, _) => blockwise_head(hidden, self.model.embed_tokens.weight.val().transpose()),
        }
    }

    /// The LM head as a matrix `[hidden, vocab]` (a view of the tied token embedding, or
    /// the linear layer's weight) and its bias, for a loss that applies it to a few positions
    /// at a time; on an autodiff backend, gradients flow back into the parameters.
    pub fn lm_head(&self) -> LmHead<B> {
        match &self.lm_head {
            Some(head) => LmHead {
                weight: head.weight.val(),
                bias: head.bias.as_ref().map(|bias| bias.val()),
                weight_trained: head.weight.val().is_require_grad(),
            },
            None => {
                let table = self.model.embed_tokens.weight.val();
                LmHead {
                    weight_trained: table.is_require_grad(),
                    weight: table.transpose(),
                    bias: None,
                }
            }
        }
    }

    fn check_ids(&self, input_ids: &Tensor<B, 2, Int>) -> Result<(), QwenError> {
        if input_ids.dims().contains(&0) {
            return Err(QwenError::InvalidInput(format!(
                "empty input_ids of shape {:?}",
                input_ids.dims()
            )));
        }
        let bounds = Tensor::cat(
            vec![
                input_ids.clone().min().reshape([1]),
                input_ids.clone().max().reshape([1]),
            ],
            0,
        );
        let vocab = self.config.vocab_size as i64;
        match bounds
            .into_data()
            .iter::<i64>()
            .find(|id| !(0..vocab).contains(id))
        {
            Some(id) => Err(QwenError::InvalidInput(format!(
                "token id {id} is outside the vocabulary of {vocab}"
            ))),
            None => Ok(()),
        }
    }
}

/// `hidden` `[batch, seq, width]` times the head `[width, vocab]` (a view of the tied
/// table or a linear's weight) one block of vocabulary entries at a time (see
/// [`vocab_blocks`], which says why).
fn blockwise_head<B: Backend>(hidden: Tensor<B, 3>, head: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, seq, width] = hidden.dims();
    let [_, vocab] = head.dims();
    let rows = hidden.reshape([batch * seq, width]);
    let blocks = vocab_blocks(&head)
        .map(|block| rows.clone().matmul(block))
        .collect();
    Tensor::cat(blocks, 1).reshape([batch, seq, vocab])
}

/// The LM head tied to the token embedding `[vocab, hidden]`: one 2-D matmul with the
/// transposed table, which CPU backends read in place (going through `linear` would reshape
/// the transposed view and copy the whole table on every call).
fn tied_head<B: Backend>(hidden: Tensor<B, 3>, embedding: Tensor<B, 2>) -> Tensor<B, 3> {
    let [batch, seq, width] = hidden.dims();
    let [vocab, _] = embedding.dims();
    hidden
        .reshape([batch * seq, width])
        .matmul(embedding.transpose())
        .reshape([batch, seq, vocab])
}
