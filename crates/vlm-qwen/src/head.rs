//! The LM head as a matrix: what a loss needs to apply it to a few positions at a time.

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

/// Vocabulary entries per block when the head is applied block by block (see
/// [`vocab_blocks`]).
const HEAD_BLOCK: usize = 16_384;

/// The output projection of a language model, `logits = hidden @ weight + bias`, whatever
/// form it is stored in (a linear layer, or tied to the token embedding).
///
/// A loss computed from the last hidden state (rather than from full logits) takes it from
/// [`LanguageModel::lm_head`](crate::LanguageModel::lm_head).
#[derive(Debug, Clone)]
pub struct LmHead<B: Backend> {
    /// `[hidden, vocab]`: the linear layer's weight, or a transposed view of the tied token
    /// embedding `[vocab, hidden]`.
    pub weight: Tensor<B, 2>,
    /// `[vocab]`, when the head has a bias.
    pub bias: Option<Tensor<B, 1>>,
    /// Whether `weight` is a parameter being trained. Read from the parameter itself: a view
    /// of it (the transposed tied table) no longer says.
    pub weight_trained: bool,
}

impl<B: Backend> LmHead<B> {
    /// Number of tokens of the vocabulary (the width of the logits).
    pub fn vocab_size(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Logits `[rows, vocab]` in f32 of hidden states `rows` `[rows, hidden]` in f32.
    ///
    /// The weight is widened to f32 one block of vocabulary entries at a time, so a
    /// half-precision head never exists as a whole f32 copy.
    pub fn logits_f32(&self, rows: Tensor<B, 2>) -> Tensor<B, 2> {
        let blocks = vocab_blocks(&self.weight)
            .map(|block| rows.clone().matmul(block.cast(FloatDType::F32)))
            .collect();
        let logits = Tensor::cat(blocks, 1);
        match &self.bias {
            Some(bias) => logits + bias.clone().cast(FloatDType::F32).unsqueeze(),
            None => logits,
        }
    }

    /// `grad_logits` `[rows, vocab]` (f32) times the transposed weight: the gradient of a
    /// loss with respect to the hidden states `[rows, hidden]` (f32) that made the logits.
    pub fn hidden_gradient_f32(&self, grad_logits: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut start = 0;
        vocab_blocks(&self.weight)
            .map(|block| {
                let width = block.dims()[1];
                let part = grad_logits.clone().narrow(1, start, width);
                start += width;
                part.matmul(block.cast(FloatDType::F32).transpose())
            })
            .reduce(|sum, part| sum + part)
            .expect("a vocabulary of at least one token")
    }
}

/// The head `[hidden, vocab]` cut into column blocks of at most [`HEAD_BLOCK`] vocabulary
/// entries, in order.
///
/// Burn's CPU backend multiplies half-precision matrices by copying both operands into
/// contiguous f32 buffers: in one matmul that is a transient of twice the head's own size
/// (545 MB for Qwen2.5-0.5B's tied table), more than a half-precision model saves. Per block
/// it is a few tens of MB; every logit is still one dot product over `hidden`.
pub(crate) fn vocab_blocks<B: Backend>(
    head: &Tensor<B, 2>,
) -> impl Iterator<Item = Tensor<B, 2>> + '_ {
    let [_, vocab] = head.dims();
    (0..vocab)
        .step_by(HEAD_BLOCK)
        .map(move |start| head.clone().narrow(1, start, HEAD_BLOCK.min(vocab - start)))
}
