//! The language model generation and the composed VLM drive: the few operations a decode loop
//! and image splicing need, so that any decoder can be plugged in. Implemented here for
//! [`QwenModel`].

use std::path::Path;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_lora::{adapted_modules, AdaptableModel, LoraConfig, TargetModules};

use crate::{KvCache, LmHead, QwenError, QwenModel};

/// A causal language model that can run from input embeddings, which is what splicing image
/// features into a prompt requires.
///
/// Errors are [`QwenError`]s: its input and generation variants say nothing Qwen-specific.
pub trait LanguageModel<B: Backend>: Module<B> {
    /// The state that lets a decode step feed only the new tokens.
    type Cache;

    /// Width of the token embeddings and hidden states.
    fn hidden_size(&self) -> usize;

    /// Number of tokens of the vocabulary (the width of the logits).
    fn vocab_size(&self) -> usize;

    /// Token embeddings `[batch, seq, hidden]` of in-vocabulary ids `[batch, seq]`.
    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, QwenError>;

    /// The last hidden state `[batch, seq, hidden]` of input embeddings `[batch, seq, hidden]`.
    ///
    /// `attention_mask` is `[batch, cached + seq]` (1 = real token) over the cached tokens and
    /// the new ones, `position_ids` is `[batch, seq]`; `cache`, when given, is attended to and
    /// extended with this pass's tokens.
    fn forward_hidden(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Tensor<B, 2, Int>,
        position_ids: Tensor<B, 2, Int>,
        cache: Option<&mut Self::Cache>,
    ) -> Result<Tensor<B, 3>, QwenError>;

    /// Logits `[batch, seq, vocab]` of hidden states `[batch, seq, hidden]`.
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;

    /// The LM head that [`logits`](Self::logits) applies, as a matrix: what a training loss
    /// computed from the last hidden state takes, a few positions at a time, instead of full
    /// `[batch, seq, vocab]` logits.
    fn lm_head(&self) -> LmHead<B>;

    /// An empty cache.
    fn new_cache(&self) -> Self::Cache;

    /// Writes the LoRA adapters this model carries as a PEFT adapter folder `dir`
    /// (`adapter_config.json` + `adapter_model.safetensors`) and returns `true`; returns
    /// `false`, writing nothing, when it carries none.
    ///
    /// `lora` is the config the adapters were applied with; without it one is inferred from
    /// the adapters themselves (see [`inferred_lora_config`]). The default implementation is
    /// for models that take no adapters: it writes nothing.
    fn save_lora_adapter(&self, dir: &Path, lora: Option<&LoraConfig>) -> Result<bool, QwenError> {
        let _ = (dir, lora);
        Ok(false)
    }
}

/// A decode cache whose rows are independent sequences, each ending at the last cached
/// position (left padding before it): what [`ContinuousBatch`](crate::ContinuousBatch) needs
/// to let sequences join and leave a running batch between decode steps.
pub trait RowCache {
    /// Appends `other`'s rows after these; the shorter side is left-padded (with zeros, which
    /// the attention mask hides) so that every row still ends at the last position.
    fn join_rows(&mut self, other: Self);

    /// Keeps the rows `rows`, in that order, without their first `skip` positions (padding
    /// in every kept row).
    fn select_rows(&mut self, rows: &[usize], skip: usize);
}

/// The [`LoraConfig`] that describes the adapters `model` carries, `None` when it carries
/// none: the adapted module paths as exact targets, their rank, `lora_alpha = scaling * r`
/// (plain LoRA) and their dropout. Adapters of different ranks or scalings are reported by
/// [`vlm_lora::save_adapter`] when saving with it.
pub fn inferred_lora_config<B: Backend, M: AdaptableModel<B>>(model: &M) -> Option<LoraConfig> {
    let targets = adapted_modules(model);
    if targets.is_empty() {
        return None;
    }
    let mut first = None;
    model.visit_linears(&mut |_, linear| {
        if let (None, Some(adapter)) = (&first, &linear.adapter) {
            first = Some((adapter.rank(), adapter.scaling, adapter.dropout.prob));
        }
    });
    let (r, scaling, dropout) = first?;
    let config = LoraConfig::new(r, scaling * r as f64, TargetModules::names(targets));
    Some(config.with_dropout(dropout))
}

impl<B: Backend> LanguageModel<B> for QwenModel<B> {
    type Cache = KvCache<B>;

    fn hidden_size(&self) -> usize {
        self.config().hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, QwenError> {
        QwenModel::embed(self, input_ids)
    }

    fn forward_hidden(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Tensor<B, 2, Int>,
        position_ids: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, QwenError> {
        let mask = Some(attention_mask);
        QwenModel::forward_hidden(self, embeds, mask, Some(position_ids), cache)
    }

    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        QwenModel::logits(self, hidden)
    }

    fn lm_head(&self) -> LmHead<B> {
        QwenModel::lm_head(self)
    }

    fn new_cache(&self) -> KvCache<B> {
        QwenModel::new_cache(self)
    }

    fn save_lora_adapter(&self, dir: &Path, lora: Option<&LoraConfig>) -> Result<bool, QwenError> {
        let inferred;
        let config = match lora {
            Some(config) => config,
            None => match inferred_lora_config(self) {
                Some(config) => {
                    inferred = config;
                    &inferred
                }
                None => return Ok(false),
            },
        };
        if adapted_modules(self).is_empty() {
            return Ok(false);
        }
        vlm_lora::save_adapter(self, config, dir)?;
        Ok(true)
    }
}
