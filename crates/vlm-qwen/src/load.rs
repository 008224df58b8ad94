//! Building Burn modules from a [`WeightStore`], one tensor at a time.

use burn::module::Param;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorCreationOptions};
use vlm_hf::{join_key, HfError, WeightStore};
use vlm_lora::LoraLinear;

use crate::names::LM_HEAD;

/// A weight store and the device (and dtype) its tensors go to.
pub(crate) struct Loader<'a, B: Backend> {
    store: &'a WeightStore,
    options: TensorCreationOptions<B>,
    /// Where the checkpoint's names live in the store; `None`: under their own names.
    keys: Option<KeyMap>,
}

/// The names of a Qwen model stored inside a composite checkpoint (a LLaVA's language model):
/// the decoder's tensors under another prefix, the LM head under another key.
pub(crate) struct KeyMap {
    /// Replaces the decoder's root (`model`, v1: `transformer`), e.g. `language_model.model`.
    pub(crate) decoder_prefix: String,
    /// Replaces `lm_head.weight`, e.g. `language_model.lm_head.weight`.
    pub(crate) lm_head_key: String,
}

impl KeyMap {
    /// The store key of the checkpoint name `key`.
    pub(crate) fn resolve(&self, key: &str) -> String {
        if key.strip_prefix(LM_HEAD) == Some(".weight") {
            return self.lm_head_key.clone();
        }
        match key.split_once('.') {
            Some((_, rest)) => join_key(&self.decoder_prefix, rest),
            None => key.to_string(),
        }
    }
}

impl<'a, B: Backend> Loader<'a, B> {
    pub(crate) fn new(store: &'a WeightStore, options: TensorCreationOptions<B>) -> Self {
        Self {
            store,
            options,
            keys: None,
        }
    }

    /// A loader reading the checkpoint's names where `keys` puts them.
    pub(crate) fn at(
        store: &'a WeightStore,
        keys: KeyMap,
        options: TensorCreationOptions<B>,
    ) -> Self {
        Self {
            store,
            options,
            keys: Some(keys),
        }
    }

    pub(crate) fn device(&self) -> &B::Device {
        &self.options.device
    }

    /// The store key of the checkpoint name `key`.
    fn store_key(&self, key: &str) -> String {
        match &self.keys {
            Some(keys) => keys.resolve(key),
            None => key.to_string(),
        }
    }

    /// Reads one float tensor of exactly `shape`.
    pub(crate) fn tensor<const D: usize>(
        &self,
        key: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, HfError> {
        self.store
            .float(&self.store_key(key), shape, self.options.clone())
    }

    /// Reads the linear layer named `prefix` (see [`WeightStore::linear`] for the layouts).
    pub(crate) fn linear(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Linear<B>, HfError> {
        let weight_key = self.store_key(&format!("{prefix}.weight"));
        let store_prefix = weight_key.strip_suffix(".weight").unwrap_or(&weight_key);
        self.store
            .linear(store_prefix, [d_in, d_out], bias, self.options.clone())
    }

    /// Reads a projection LoRA may adapt: [`linear`](Self::linear) without adapter.
    pub(crate) fn adaptable(
        &self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<LoraLinear<B>, HfError> {
        Ok(LoraLinear::new(self.linear(prefix, d_in, d_out, bias)?))
    }

    /// Reads an RMSNorm weight of size `dim`.
    pub(crate) fn rms_norm(&self, key: &str, dim: usize, eps: f64) -> Result<RmsNorm<B>, HfError> {
        Ok(RmsNorm {
            gamma: Param::from_tensor(self.tensor(key, [dim])?),
            epsilon: eps,
        })
    }

    /// Reads a `[vocab, dim]` embedding table.
    pub(crate) fn embedding(
        &self,
        key: &str,
        vocab: usize,
        dim: usize,
    ) -> Result<Embedding<B>, HfError> {
        Ok(Embedding {
            weight: Param::from_tensor(self.tensor(key, [vocab, dim])?),
        })
    }
}
