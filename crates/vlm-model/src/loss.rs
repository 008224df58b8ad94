//! The causal language-modelling loss of Hugging Face's `*ForCausalLM`.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Int, Tensor};
use vlm_data::{supervised_targets, IGNORE_INDEX};

use crate::ModelError;

/// A mean cross-entropy and the number of tokens it averages over.
#[derive(Debug, Clone)]
pub struct CausalLmLoss<B: Backend> {
    /// `[1]`: the mean negative log-likelihood of the supervised tokens.
    pub loss: Tensor<B, 1>,
    /// How many tokens the mean is over; weight by it to combine micro-batches exactly.
    pub supervised_tokens: usize,
}

/// Shifted cross-entropy: the logits at position `j` predict `labels[:, j + 1]`; labels equal
/// to [`IGNORE_INDEX`] are skipped and the mean is over the remaining tokens of the whole
/// batch (Hugging Face's `ForCausalLMLoss`).
///
/// Computed from a log-softmax (max-shifted), so large logits neither overflow nor lose
/// precision. A batch without any supervised token is [`ModelError::NoSupervisedTokens`]
/// rather than a silent 0 or NaN; a label outside the vocabulary is an error naming it.
pub fn causal_lm_loss<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
) -> Result<CausalLmLoss<B>, ModelError> {
    causal_lm_loss_read(logits, labels, None)
}

/// [`causal_lm_loss`], given the labels already read to the host (row-major) when the
/// caller has them, so that they are not read back again.
pub(crate) fn causal_lm_loss_read<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
    host_labels: Option<Vec<i64>>,
) -> Result<CausalLmLoss<B>, ModelError> {
    let [batch, seq, vocab] = logits.dims();
    if labels.dims() != [batch, seq] {
        return Err(ModelError::InvalidInput(format!(
            "labels of shape {:?} do not match logits of shape {:?}",
            labels.dims(),
            logits.dims()
        )));
    }
    if seq < 2 {
        return Err(ModelError::NoSupervisedTokens);
    }
    let host_labels = host_labels.unwrap_or_else(|| labels.to_data().iter::<i64>().collect());
    let supervised_tokens = count_supervised(&host_labels, seq, vocab)?;
    let targets = labels.slice([0..batch, 1..seq]);
    let ignored = targets.clone().equal_elem(IGNORE_INDEX);
    let targets = targets.mask_fill(ignored.clone(), 0).unsqueeze_dim::<3>(2);
    // In f32 whatever the logits' type, as transformers upcasts them for the loss.
    let predicting = logits
        .slice([0..batch, 0..seq - 1, 0..vocab])
        .cast(FloatDType::F32);
    let log_probs = log_softmax(predicting, 2);
    let picked = log_probs
        .gather(2, targets)
        .reshape([batch, seq - 1])
        .mask_fill(ignored, 0.0);
    let loss = picked.sum().neg().div_scalar(supervised_tokens as f64);
    Ok(CausalLmLoss {
        loss,
        supervised_tokens,
    })
}

/// Number of targets of `labels` (`[batch, seq]`, row-major) that are not ignored, checking
/// each is in the vocabulary.
fn count_supervised(labels: &[i64], seq: usize, vocab_size: usize) -> Result<usize, ModelError> {
    let mut count = 0;
    for (sample, position, label) in supervised_targets(labels, seq) {
        if !(0..vocab_size as i64).contains(&label) {
            return Err(ModelError::LabelOutOfRange {
                sample,
                position,
                label,
                vocab_size,
            });
        }
        count += 1;
    }
    match count {
        0 => Err(ModelError::NoSupervisedTokens),
        count => Ok(count),
    }
}
