//! Checking and completing the optional inputs of a forward pass.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::cache::KvCache;
use crate::mask::position_ids_from_mask;
use crate::{QwenConfig, QwenError};

/// A forward pass's mask and position ids, checked against the embeddings and the cache.
pub(crate) struct ForwardInputs<B: Backend> {
    /// `[batch, cached + seq]`, 1 = real token.
    pub(crate) attention_mask: Tensor<B, 2, Int>,
    /// `[batch, seq]`.
    pub(crate) position_ids: Tensor<B, 2, Int>,
}

impl<B: Backend> ForwardInputs<B> {
    /// Fills in what is missing as Hugging Face does: an all-ones mask, and position ids from
    /// the mask (`cumsum - 1`, pads at 1) for the last `seq` positions.
    pub(crate) fn resolve(
        config: &QwenConfig,
        embed_dims: [usize; 3],
        attention_mask: Option<Tensor<B, 2, Int>>,
        position_ids: Option<Tensor<B, 2, Int>>,
        cache: Option<&KvCache<B>>,
        device: &B::Device,
    ) -> Result<Self, QwenError> {
        let [batch, seq, _] = embed_dims;
        expect_dims(
            "input embeddings",
            &embed_dims,
            &[batch, seq, config.hidden_size],
        )?;
        if batch == 0 || seq == 0 {
            return Err(QwenError::InvalidInput(format!(
                "empty input of shape {embed_dims:?}"
            )));
        }
        let past = cached_len(cache, batch, config.num_hidden_layers)?;
        if let Some(limit) = config.max_context.filter(|limit| past + seq > *limit) {
            return Err(QwenError::InvalidInput(format!(
                "{} tokens exceed the config's seq_length {limit}: past it Qwen v1 switches on \
                 dynamic NTK / log-n attention scaling, which is not implemented",
                past + seq
            )));
        }
        let attention_mask = match attention_mask {
            Some(mask) => checked("attention_mask", mask, [batch, past + seq])?,
            None => Tensor::ones([batch, past + seq], device),
        };
        let position_ids = match position_ids {
            Some(ids) => checked("position_ids", ids, [batch, seq])?,
            None => {
                position_ids_from_mask(attention_mask.clone()).slice([0..batch, past..past + seq])
            }
        };
        Ok(Self {
            attention_mask,
            position_ids,
        })
    }
}

/// Number of cached positions, after checking the cache matches the batch.
fn cached_len<B: Backend>(
    cache: Option<&KvCache<B>>,
    batch: usize,
    layers: usize,
) -> Result<usize, QwenError> {
    let Some(cache) = cache else {
        return Ok(0);
    };
    if cache.num_layers() != layers {
        return Err(QwenError::InvalidInput(format!(
            "KV cache made for {} layers, the model has {layers}",
            cache.num_layers()
        )));
    }
    match cache.batch_size() {
        Some(cached) if cached != batch => Err(QwenError::InvalidInput(format!(
            "batch of {batch} does not match the KV cache's batch of {cached}"
        ))),
        _ => Ok(cache.len()),
    }
}

fn checked<B: Backend>(
    what: &str,
    tensor: Tensor<B, 2, Int>,
    expected: [usize; 2],
) -> Result<Tensor<B, 2, Int>, QwenError> {
    expect_dims(what, &tensor.dims(), &expected)?;
    Ok(tensor)
}

fn expect_dims(what: &str, actual: &[usize], expected: &[usize]) -> Result<(), QwenError> {
    if actual == expected {
        return Ok(());
    }
    Err(QwenError::InvalidInput(format!(
        "{what} has shape {actual:?}, expected {expected:?}"
    )))
}
