//! What a forward pass of the VLM takes, and what it hands the language model.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_qwen::left_pad;

use crate::ModelError;

/// A batch of prompts with their images.
///
/// Each image appears in `input_ids` as a run of `tokens_per_image` placeholder ids (the
/// llava-hf convention), anywhere in its sample; samples may hold no image (text only) or
/// several, and be left-padded.
#[derive(Debug, Clone)]
pub struct VlmBatch<B: Backend> {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, seq]`, 1 over real tokens and 0 over padding; all ones when `None`.
    pub attention_mask: Option<Tensor<B, 2, Int>>,
    /// `[images, channels, side, side]` pixels of the images the placeholders stand for, in
    /// the order they appear (sample by sample, left to right); `None` when there are none.
    pub pixel_values: Option<Tensor<B, 4>>,
}

impl<B: Backend> VlmBatch<B> {
    /// Prompts of different lengths left-padded with `pad_token_id`, with the pixels of
    /// their images: what batched generation takes (every prompt ends at the last column).
    pub fn left_padded(
        prompts: &[Vec<u32>],
        pad_token_id: u32,
        pixel_values: Option<Tensor<B, 4>>,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let padded = left_pad::<B>(prompts, pad_token_id, device)?;
        Ok(Self {
            input_ids: padded.input_ids,
            attention_mask: Some(padded.attention_mask),
            pixel_values,
        })
    }
}

/// The language model's inputs for a batch: embeddings with the image features spliced in,
/// the attention mask and the position ids (`cumsum(mask) - 1`, pads at 1, as Hugging Face
/// `generate()` derives them).
#[derive(Debug, Clone)]
pub struct LanguageInputs<B: Backend> {
    /// `[batch, seq, hidden]`.
    pub inputs_embeds: Tensor<B, 3>,
    /// `[batch, seq]`.
    pub attention_mask: Tensor<B, 2, Int>,
    /// `[batch, seq]`.
    pub position_ids: Tensor<B, 2, Int>,
}

/// Two integer tensors of one shape (ids and labels, mask and labels) read to the host in one
/// transfer, each row-major: one synchronisation with the device instead of two. `None` when
/// their shapes differ.
pub fn read_together<B: Backend>(
    first: &Tensor<B, 2, Int>,
    second: &Tensor<B, 2, Int>,
) -> Option<(Vec<i64>, Vec<i64>)> {
    if first.dims() != second.dims() {
        return None;
    }
    let both = Tensor::cat(vec![first.clone(), second.clone()], 0);
    let mut first = both.to_data().iter::<i64>().collect::<Vec<_>>();
    let second = first.split_off(first.len() / 2);
    Some((first, second))
}
