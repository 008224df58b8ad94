//! The causal language-modelling loss of Hugging Face's `*ForCausalLM`.

use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, IndexingUpdateOp, Int, Tensor, TensorData};
use vlm_data::{supervised_targets, IGNORE_INDEX};
use vlm_qwen::LmHead;

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
/// Training uses [`chunked_causal_lm_loss`], the same loss without the full logits.
pub fn causal_lm_loss<B: Backend>(
    logits: Tensor<B, 3>,
    labels: Tensor<B, 2, Int>,
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
    let host_labels = labels.to_data().iter::<i64>().collect::<Vec<_>>();
    let supervised_tokens = supervised(&host_labels, seq, vocab)?.len();
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

/// Bytes of f32 logits the chunked loss computes at once (see [`loss_chunk_rows`]).
const LOSS_BLOCK_BYTES: usize = 64 << 20;

/// Positions per chunk of [`chunked_causal_lm_loss`] by default: as many as keep one chunk's
/// f32 logits within 64 MiB (110 positions for Qwen's 151,936-token vocabulary).
pub fn loss_chunk_rows(vocab_size: usize) -> usize {
    (LOSS_BLOCK_BYTES / (4 * vocab_size.max(1))).max(1)
}

/// The loss of [`causal_lm_loss`] computed from the last hidden state `[batch, seq, hidden]`
/// and the LM head instead of from full logits, with equal value and gradients (to float
/// rounding), and without any `[batch, seq, vocab]` tensor.
///
/// Only the supervised positions are read from `hidden`. Their logits are computed in f32
/// (as transformers upcasts them for the loss), `rows_per_chunk` positions at a time
/// ([`loss_chunk_rows`] is a good choice), on constant copies outside the autodiff graph;
/// each chunk yields its part of the loss and, when training, its exact gradients
/// `(softmax - one_hot(target)) / n` pushed back through the head: to the hidden states
/// (`[n, hidden]`) and, when the head is trained (full fine-tuning of a tied or untied head),
/// to its weight and bias. Only one chunk's `[rows_per_chunk, vocab]` logits exist at a time.
///
/// The returned loss is `value + (s - s.detach())` with `s = sum(h * G_h) (+ sum(W * G_W))`:
/// its value is exactly `value`, and back-propagating it gives `G_h` to the selected hidden
/// states `h` (and `G_W` to the head): what a custom autograd function does in fused linear
/// cross-entropy kernels (Liger's), built from ordinary tensor ops so that it runs on every
/// backend. The graph keeps the selected hidden states and `G_h`, not the logits. The
/// gradient work is skipped on a backend without autodiff (evaluation).
pub fn chunked_causal_lm_loss<B: Backend>(
    hidden: Tensor<B, 3>,
    head: &LmHead<B>,
    labels: Tensor<B, 2, Int>,
    rows_per_chunk: usize,
) -> Result<CausalLmLoss<B>, ModelError> {
    let host_labels = labels.to_data().iter::<i64>().collect::<Vec<_>>();
    hidden_causal_lm_loss(hidden, head, labels.dims(), &host_labels, rows_per_chunk)
}

/// [`chunked_causal_lm_loss`] of labels `[batch, seq]` given as read to the host (row-major).
pub(crate) fn hidden_causal_lm_loss<B: Backend>(
    hidden: Tensor<B, 3>,
    head: &LmHead<B>,
    label_dims: [usize; 2],
    labels: &[i64],
    rows_per_chunk: usize,
) -> Result<CausalLmLoss<B>, ModelError> {
    let [batch, seq, width] = hidden.dims();
    if label_dims != [batch, seq] {
        return Err(ModelError::InvalidInput(format!(
            "labels of shape {label_dims:?} do not match hidden states of shape {:?}",
            hidden.dims()
        )));
    }
    if seq < 2 {
        return Err(ModelError::NoSupervisedTokens);
    }
    let targets = supervised(labels, seq, head.vocab_size())?;
    let device = hidden.device();
    let rows = targets
        .iter()
        .map(|target| target.row as i64)
        .collect::<Vec<_>>();
    let rows = Tensor::from_data(TensorData::new(rows, [targets.len()]), &device);
    let selected = hidden
        .reshape([batch * seq, width])
        .select(0, rows)
        .cast(FloatDType::F32);
    let chunks = LossChunks::new(&targets, rows_per_chunk, B::ad_enabled(&device), head);
    let parts = chunks.run(untracked(selected.clone()), &constant_head(head), &device);
    let mut loss = parts.value;
    if let Some(grad_hidden) = parts.grad_hidden {
        let mut surrogate = (selected * grad_hidden).sum();
        if let Some(grad_weight) = parts.grad_weight {
            surrogate = surrogate + (head.weight.clone().cast(FloatDType::F32) * grad_weight).sum();
        }
        if let (Some(bias), Some(grad_bias)) = (&head.bias, parts.grad_bias) {
            surrogate = surrogate + (bias.clone().cast(FloatDType::F32) * grad_bias).sum();
        }
        loss = loss + (surrogate.clone() - surrogate.detach());
    }
    Ok(CausalLmLoss {
        loss,
        supervised_tokens: targets.len(),
    })
}

/// One supervised target: the row (`sample * seq + position`) of the hidden state that
/// predicts it, and its label.
struct Target {
    row: usize,
    label: i64,
}

/// The chunk loop of [`hidden_causal_lm_loss`]: what it computes and for which parameters.
struct LossChunks<'a> {
    targets: &'a [Target],
    rows_per_chunk: usize,
    /// Whether gradients are wanted at all (an autodiff backend).
    training: bool,
    weight_trained: bool,
    bias_trained: bool,
}

/// The loss value and the gradients the chunks computed (all constants).
struct LossParts<B: Backend> {
    /// `[1]`: the mean cross-entropy.
    value: Tensor<B, 1>,
    /// `[n, hidden]`, when training.
    grad_hidden: Option<Tensor<B, 2>>,
    /// `[hidden, vocab]`, when the head's weight is trained.
    grad_weight: Option<Tensor<B, 2>>,
    /// `[vocab]`, when the head's bias is trained.
    grad_bias: Option<Tensor<B, 1>>,
}

impl<'a> LossChunks<'a> {
    fn new<B: Backend>(
        targets: &'a [Target],
        rows_per_chunk: usize,
        training: bool,
        head: &LmHead<B>,
    ) -> Self {
        Self {
            targets,
            rows_per_chunk: rows_per_chunk.max(1),
            training,
            weight_trained: training && head.weight_trained,
            bias_trained: training && head.bias.as_ref().is_some_and(|b| b.is_require_grad()),
        }
    }

    /// Runs every chunk on `hidden` `[n, width]` (f32) and `head`, both constants.
    fn run<B: Backend>(
        &self,
        hidden: Tensor<B, 2>,
        head: &LmHead<B>,
        device: &B::Device,
    ) -> LossParts<B> {
        let n = self.targets.len();
        let mut value = Tensor::<B, 1>::zeros([1], device);
        let mut grad_hidden = Vec::new();
        let mut grad_weight: Option<Tensor<B, 2>> = None;
        let mut grad_bias: Option<Tensor<B, 1>> = None;
        for (index, chunk) in self.targets.chunks(self.rows_per_chunk).enumerate() {
            let rows = hidden
                .clone()
                .narrow(0, index * self.rows_per_chunk, chunk.len());
            let labels = chunk.iter().map(|target| target.label).collect::<Vec<_>>();
            let labels =
                Tensor::<B, 2, Int>::from_data(TensorData::new(labels, [chunk.len(), 1]), device);
            let log_probs = log_softmax(head.logits_f32(rows.clone()), 1);
            value = value + log_probs.clone().gather(1, labels.clone()).sum().neg();
            if !self.training {
                continue;
            }
            // d(loss)/d(logits) = (softmax - one_hot(label)) / n.
            let minus_one = Tensor::full([chunk.len(), 1], -1.0, device);
            let grad_logits = log_probs
                .exp()
                .scatter(1, labels, minus_one, IndexingUpdateOp::Add)
                .div_scalar(n as f64);
            if self.bias_trained {
                let part = grad_logits.clone().sum_dim(0).squeeze_dim(0);
                grad_bias = Some(accumulate(grad_bias, part));
            }
            if self.weight_trained {
                let part = rows.transpose().matmul(grad_logits.clone());
                grad_weight = Some(accumulate(grad_weight, part));
            }
            grad_hidden.push(head.hidden_gradient_f32(grad_logits));
        }
        LossParts {
            value: value.div_scalar(n as f64),
            grad_hidden: self.training.then(|| Tensor::cat(grad_hidden, 0)),
            grad_weight,
            grad_bias,
        }
    }
}

/// `sum + part`, or `part` when there is no sum yet.
fn accumulate<B: Backend, const D: usize>(
    sum: Option<Tensor<B, D>>,
    part: Tensor<B, D>,
) -> Tensor<B, D> {
    match sum {
        Some(sum) => sum + part,
        None => part,
    }
}

/// `head` as a constant, outside any autodiff graph.
fn constant_head<B: Backend>(head: &LmHead<B>) -> LmHead<B> {
    LmHead {
        weight: untracked(head.weight.clone()),
        bias: head.bias.clone().map(untracked),
        weight_trained: false,
    }
}

/// `tensor` as a constant: no autodiff graph behind it and none built on it (a detached
/// parameter would otherwise still require a gradient, and every op on it be recorded).
fn untracked<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, D> {
    tensor.detach().set_require_grad(false)
}

/// The supervised targets of `labels` (`[batch, seq]`, row-major), checking each is in the
/// vocabulary; [`ModelError::NoSupervisedTokens`] when there is none.
fn supervised(labels: &[i64], seq: usize, vocab_size: usize) -> Result<Vec<Target>, ModelError> {
    let mut targets = Vec::new();
    for (sample, position, label) in supervised_targets(labels, seq) {
        if !(0..vocab_size as i64).contains(&label) {
            return Err(ModelError::LabelOutOfRange {
                sample,
                position,
                label,
                vocab_size,
            });
        }
        targets.push(Target {
            row: sample * seq + position - 1,
            label,
        });
    }
    match targets.is_empty() {
        true => Err(ModelError::NoSupervisedTokens),
        false => Ok(targets),
    }
}
