//! Batched autoregressive generation: prefill once, then one token per step through the KV
//! cache, with Hugging Face `generate()`'s padding, stopping and position conventions.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::cache::KvCache;
use crate::sampling::Decoding;
use crate::{QwenError, QwenModel, TokenChooser};

/// Settings of [`QwenModel::generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// Most tokens to add to each sequence.
    pub max_new_tokens: usize,
    /// Greedy or sampled choice of each token.
    pub decoding: Decoding,
    /// Hugging Face repetition penalty over each sequence's real tokens (1.0 = off).
    pub repetition_penalty: f32,
    /// A sequence stops after emitting any of these (the stop token is kept).
    pub stop_token_ids: Vec<u32>,
    /// Emitted by sequences that have stopped while others go on.
    pub pad_token_id: u32,
    /// Decode through the KV cache (`true`) or recompute the whole sequence every step.
    pub use_cache: bool,
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens`, no penalty, no stop tokens, pad id 0, cached.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            decoding: Decoding::Greedy,
            repetition_penalty: 1.0,
            stop_token_ids: Vec::new(),
            pad_token_id: 0,
            use_cache: true,
        }
    }
}

/// A batch of prompts padded to one length.
#[derive(Debug, Clone)]
pub struct PaddedBatch<B: Backend> {
    /// `[batch, longest]` token ids, padding first.
    pub input_ids: Tensor<B, 2, Int>,
    /// `[batch, longest]`, 0 over the padding and 1 over the prompt.
    pub attention_mask: Tensor<B, 2, Int>,
}

/// Left-pads prompts of different lengths with `pad_token_id` (what batched generation needs:
/// every prompt ends at the last column).
pub fn left_pad<B: Backend>(
    prompts: &[Vec<u32>],
    pad_token_id: u32,
    device: &B::Device,
) -> Result<PaddedBatch<B>, QwenError> {
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        return Err(QwenError::InvalidInput(
            "no prompts, or an empty prompt".into(),
        ));
    }
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(prompts.len() * longest);
    let mut mask = Vec::with_capacity(prompts.len() * longest);
    for prompt in prompts {
        let pads = longest - prompt.len();
        ids.extend(std::iter::repeat_n(i64::from(pad_token_id), pads));
        ids.extend(prompt.iter().map(|&id| i64::from(id)));
        mask.extend(std::iter::repeat_n(0i64, pads));
        mask.extend(std::iter::repeat_n(1i64, prompt.len()));
    }
    let shape = [prompts.len(), longest];
    Ok(PaddedBatch {
        input_ids: Tensor::from_data(TensorData::new(ids, shape), device),
        attention_mask: Tensor::from_data(TensorData::new(mask, shape), device),
    })
}

impl<B: Backend> QwenModel<B> {
    /// Continues each prompt of a (left-padded) batch and returns the new tokens per sequence.
    ///
    /// `input_ids` and `attention_mask` are `[batch, len]` (mask all ones when `None`).
    /// All sequences get the same number of tokens: once one emits a stop token it continues
    /// with `pad_token_id`, and generation ends when all have stopped or after
    /// `max_new_tokens`. `on_token` receives each step's tokens, one per sequence.
    pub fn generate(
        &self,
        input_ids: Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        config: &GenerationConfig,
        on_token: impl FnMut(&[u32]),
    ) -> Result<Vec<Vec<u32>>, QwenError> {
        let mask =
            attention_mask.unwrap_or_else(|| Tensor::ones(input_ids.dims(), &input_ids.device()));
        let history = real_tokens(&input_ids, &mask);
        let embeds = self.embed(input_ids)?;
        Generation::new(self, config, mask, history)?.run(embeds, on_token)
    }

    /// Like [`generate`](Self::generate) but from input embeddings `[batch, len, hidden]`
    /// (e.g. with image features spliced in); the repetition penalty then sees only the
    /// generated tokens.
    pub fn generate_from_embeds(
        &self,
        embeds: Tensor<B, 3>,
        attention_mask: Option<Tensor<B, 2, Int>>,
        config: &GenerationConfig,
        on_token: impl FnMut(&[u32]),
    ) -> Result<Vec<Vec<u32>>, QwenError> {
        let [batch, len, _] = embeds.dims();
        let mask = attention_mask.unwrap_or_else(|| Tensor::ones([batch, len], &embeds.device()));
        Generation::new(self, config, mask, vec![Vec::new(); batch])?.run(embeds, on_token)
    }
}

/// Each row's tokens where the mask is 1.
fn real_tokens<B: Backend>(ids: &Tensor<B, 2, Int>, mask: &Tensor<B, 2, Int>) -> Vec<Vec<u32>> {
    let [batch, len] = ids.dims();
    let ids: Vec<i64> = ids.to_data().iter::<i64>().collect();
    let mask: Vec<i64> = mask.to_data().iter::<i64>().collect();
    (0..batch)
        .map(|row| {
            let span = row * len..(row + 1) * len;
            ids[span.clone()]
                .iter()
                .zip(mask.get(span).unwrap_or_default())
                .filter(|(_, &keep)| keep != 0)
                .map(|(&id, _)| id as u32)
                .collect()
        })
        .collect()
}

/// What the next forward pass attends to.
enum Context<B: Backend> {
    /// Keys and values of everything so far; a step feeds only the new tokens.
    Cached(KvCache<B>),
    /// Embeddings of everything so far, recomputed every step.
    Full(Option<Tensor<B, 3>>),
}

/// The state of one batched generation run.
struct Generation<'a, B: Backend> {
    model: &'a QwenModel<B>,
    max_new_tokens: usize,
    chooser: TokenChooser<'a>,
    mask: Tensor<B, 2, Int>,
    context: Context<B>,
}

impl<'a, B: Backend> Generation<'a, B> {
    fn new(
        model: &'a QwenModel<B>,
        config: &'a GenerationConfig,
        mask: Tensor<B, 2, Int>,
        history: Vec<Vec<u32>>,
    ) -> Result<Self, QwenError> {
        let chooser = TokenChooser::new(config, history, model.config().vocab_size)?;
        let context = if config.use_cache {
            Context::Cached(model.new_cache())
        } else {
            Context::Full(None)
        };
        Ok(Self {
            model,
            max_new_tokens: config.max_new_tokens,
            chooser,
            mask,
            context,
        })
    }

    fn run(
        mut self,
        prompt: Tensor<B, 3>,
        mut on_token: impl FnMut(&[u32]),
    ) -> Result<Vec<Vec<u32>>, QwenError> {
        let steps = self.max_new_tokens;
        if steps == 0 {
            return Ok(self.chooser.into_generated());
        }
        let mut logits = self.forward(prompt)?;
        for step in 1..=steps {
            let tokens = self.chooser.choose(logits);
            on_token(&tokens);
            if step == steps || self.chooser.all_finished() {
                break;
            }
            logits = self.advance(&tokens)?;
        }
        Ok(self.chooser.into_generated())
    }

    /// Feeds the chosen tokens and returns the logits for the next ones.
    fn advance(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, QwenError> {
        let device = self.mask.device();
        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::from_data(TensorData::new(ids, [tokens.len(), 1]), &device);
        let ones = Tensor::ones([tokens.len(), 1], &device);
        self.mask = Tensor::cat(vec![self.mask.clone(), ones], 1);
        let embeds = self.model.embed(ids)?;
        self.forward(embeds)
    }

    /// Runs the new embeddings through the model and returns each sequence's last logits.
    fn forward(&mut self, embeds: Tensor<B, 3>) -> Result<Vec<Vec<f32>>, QwenError> {
        let mask = Some(self.mask.clone());
        let hidden = match &mut self.context {
            Context::Cached(cache) => self.model.forward_hidden(embeds, mask, None, Some(cache))?,
            Context::Full(all) => {
                let embeds = match all.take() {
                    Some(previous) => Tensor::cat(vec![previous, embeds], 1),
                    None => embeds,
                };
                *all = Some(embeds.clone());
                self.model.forward_hidden(embeds, mask, None, None)?
            }
        };
        let [batch, len, width] = hidden.dims();
        let last = self
            .model
            .logits(hidden.slice([0..batch, len - 1..len, 0..width]));
        let vocab = self.model.config().vocab_size;
        let values: Vec<f32> = last.into_data().iter::<f32>().collect();
        Ok(values.chunks(vocab).map(<[f32]>::to_vec).collect())
    }
}
