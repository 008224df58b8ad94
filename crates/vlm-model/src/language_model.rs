//! The language model a VLM feeds: the few operations the composed model needs, so that any
//! decoder can be plugged in. Implemented here for `vlm_qwen::QwenModel`.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_qwen::{KvCache, QwenModel};

use crate::ModelError;

/// A causal language model that can run from input embeddings, which is what splicing image
/// features into a prompt requires.
pub trait LanguageModel<B: Backend>: Module<B> {
    /// The state that lets a decode step feed only the new tokens.
    type Cache;

    /// Width of the token embeddings and hidden states.
    fn hidden_size(&self) -> usize;

    /// Number of tokens of the vocabulary (the width of the logits).
    fn vocab_size(&self) -> usize;

    /// Token embeddings `[batch, seq, hidden]` of in-vocabulary ids `[batch, seq]`.
    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, ModelError>;

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
    ) -> Result<Tensor<B, 3>, ModelError>;

    /// Logits `[batch, seq, vocab]` of hidden states `[batch, seq, hidden]`.
    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3>;

    /// An empty cache.
    fn new_cache(&self) -> Self::Cache;
}

impl<B: Backend> LanguageModel<B> for QwenModel<B> {
    type Cache = KvCache<B>;

    fn hidden_size(&self) -> usize {
        self.config().hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }

    fn embed(&self, input_ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, ModelError> {
        Ok(QwenModel::embed(self, input_ids)?)
    }

    fn forward_hidden(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Tensor<B, 2, Int>,
        position_ids: Tensor<B, 2, Int>,
        cache: Option<&mut KvCache<B>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let mask = Some(attention_mask);
        Ok(QwenModel::forward_hidden(
            self,
            embeds,
            mask,
            Some(position_ids),
            cache,
        )?)
    }

    fn logits(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        QwenModel::logits(self, hidden)
    }

    fn new_cache(&self) -> KvCache<B> {
        QwenModel::new_cache(self)
    }
}
