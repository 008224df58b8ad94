//! Batched autoregressive generation, the one decode loop of every model that generates:
//! prefill once, then one token per step through the cache, with Hugging Face `generate()`'s
//! padding, stopping and position conventions. The plain LLM ([`QwenModel::generate`]) feeds
//! it token embeddings; the VLM in `vlm-model` feeds it embeddings with image features spliced
//! in, and its chat keeps a [`Decoder`] between turns.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::chooser::TokenChooser;
use crate::mask::position_ids_from_mask;
use crate::rows::{row_indices, stack_aligned};
use crate::sampling::Decoding;
use crate::{LanguageModel, QwenError, QwenModel, RowCache};

/// Settings of the decode loop ([`decode`], behind [`QwenModel::generate`] and the VLM's
/// generation and chat).
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
        mut on_token: impl FnMut(&[u32]),
    ) -> Result<Vec<Vec<u32>>, QwenError> {
        let mask =
            attention_mask.unwrap_or_else(|| Tensor::ones(input_ids.dims(), &input_ids.device()));
        let embeds = QwenModel::embed(self, input_ids.clone())?;
        let prompt = Prompt::new(embeds, &input_ids, mask);
        let mut decoder = Decoder::new(self, config.use_cache);
        decode(&mut decoder, prompt, config, |tokens| {
            on_token(tokens);
            ControlFlow::Continue(())
        })
    }
}

/// What the decode loop starts from: a batch of prompts as input embeddings.
#[derive(Debug, Clone)]
pub struct Prompt<B: Backend> {
    /// `[batch, len, hidden]`, image features spliced in where a VLM has them.
    pub embeds: Tensor<B, 3>,
    /// `[batch, len]`, 0 over left padding and 1 over the prompt.
    pub attention_mask: Tensor<B, 2, Int>,
    /// Each sequence's tokens so far, which the repetition penalty sees.
    pub history: Vec<Vec<u32>>,
}

impl<B: Backend> Prompt<B> {
    /// The prompt of `embeds` computed from `input_ids` `[batch, len]`; the repetition
    /// penalty sees each row's ids where `attention_mask` is 1 (image placeholders included,
    /// as in Hugging Face).
    pub fn new(
        embeds: Tensor<B, 3>,
        input_ids: &Tensor<B, 2, Int>,
        attention_mask: Tensor<B, 2, Int>,
    ) -> Self {
        let history = real_tokens(input_ids, &attention_mask);
        Self {
            embeds,
            attention_mask,
            history,
        }
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

/// Feeds the prompt, then chooses tokens and feeds them back until every sequence has
/// stopped or `max_new_tokens` are out, or `on_token` breaks (a client gone, a stop string
/// seen); returns the new tokens of each sequence.
///
/// The settings are checked before anything is fed; the prompt is fed even when no token is
/// asked for (a chat keeps it in its context), and the last chosen tokens are not fed.
pub fn decode<B: Backend, L: LanguageModel<B>>(
    decoder: &mut Decoder<'_, B, L>,
    prompt: Prompt<B>,
    config: &GenerationConfig,
    mut on_token: impl FnMut(&[u32]) -> ControlFlow<()>,
) -> Result<Vec<Vec<u32>>, QwenError> {
    let vocab_size = decoder.language_model.vocab_size();
    let mut chooser = TokenChooser::new(config, prompt.history, vocab_size)?;
    let mut logits = decoder.feed(prompt.embeds, prompt.attention_mask)?;
    for step in 1..=config.max_new_tokens {
        let tokens = chooser.choose(logits.rows_mut());
        let flow = on_token(&tokens);
        if flow.is_break() || step == config.max_new_tokens || chooser.all_finished() {
            break;
        }
        logits = decoder.feed_tokens(&tokens)?;
    }
    Ok(chooser.into_generated())
}

/// Each sequence's logits at its last position: one row of `vocab` values per sequence, in
/// one buffer (read from the device once, never copied row by row).
#[derive(Debug)]
pub(crate) struct Logits {
    values: Vec<f32>,
    vocab: usize,
}

impl Logits {
    /// The rows, in sequence order, for the token choosers to change in place.
    pub(crate) fn rows_mut(&mut self) -> std::slice::ChunksExactMut<'_, f32> {
        self.values.chunks_exact_mut(self.vocab)
    }
}

impl std::ops::Index<usize> for Logits {
    type Output = [f32];

    /// Sequence `row`'s logits.
    fn index(&self, row: usize) -> &[f32] {
        &self.values[row * self.vocab..(row + 1) * self.vocab]
    }
}

/// What the next forward pass attends to.
enum Context<B: Backend, C> {
    /// The language model's cache of everything so far; a step feeds only new tokens.
    Cached(C),
    /// The embeddings of everything so far, recomputed every step.
    Full(Option<Tensor<B, 3>>),
}

/// Feeds a language model the sequence piece by piece, keeping the attention mask and the
/// cache (or the whole sequence) between pieces; position ids follow from the mask.
pub struct Decoder<'a, B: Backend, L: LanguageModel<B>> {
    language_model: &'a L,
    context: Context<B, L::Cache>,
    /// `[batch, total]`: which positions so far are real tokens (1) or padding (0).
    pub(crate) mask: Option<Tensor<B, 2, Int>>,
    /// Whether the LM head takes the rows' last hidden states as one matrix `[rows, hidden]`
    /// (set once rows have joined: a continuous batch) rather than one `[1, hidden]` product
    /// per row, as the decode loop computes them; the same logits up to rounding, much faster
    /// for many rows on CPU backends.
    stacked_head: bool,
}

impl<'a, B: Backend, L: LanguageModel<B>> Decoder<'a, B, L> {
    /// A decoder that has seen nothing yet; `use_cache` false recomputes the whole sequence
    /// every step.
    pub fn new(language_model: &'a L, use_cache: bool) -> Self {
        let context = match use_cache {
            true => Context::Cached(language_model.new_cache()),
            false => Context::Full(None),
        };
        Self {
            language_model,
            context,
            mask: None,
            stacked_head: false,
        }
    }

    /// Feeds embeddings `[batch, n, hidden]` with their mask `[batch, n]` and returns each
    /// sequence's logits at its last position.
    pub(crate) fn feed(
        &mut self,
        embeds: Tensor<B, 3>,
        new_mask: Tensor<B, 2, Int>,
    ) -> Result<Logits, QwenError> {
        let [batch, new, _] = embeds.dims();
        if new_mask.dims() != [batch, new] {
            return Err(QwenError::InvalidInput(format!(
                "attention_mask has shape {:?}, expected {:?}",
                new_mask.dims(),
                [batch, new]
            )));
        }
        let mask = match self.mask.take() {
            Some(seen) => Tensor::cat(vec![seen, new_mask], 1),
            None => new_mask,
        };
        self.mask = Some(mask.clone());
        let [_, total] = mask.dims();
        let positions = position_ids_from_mask(mask.clone());
        let language_model = self.language_model;
        let hidden = match &mut self.context {
            Context::Cached(cache) => {
                let positions = positions.slice([0..batch, total - new..total]);
                language_model.forward_hidden(embeds, mask, positions, Some(cache))?
            }
            Context::Full(seen) => {
                let embeds = match seen.take() {
                    Some(previous) => Tensor::cat(vec![previous, embeds], 1),
                    None => embeds,
                };
                *seen = Some(embeds.clone());
                language_model.forward_hidden(embeds, mask, positions, None)?
            }
        };
        Ok(self.last_logits(hidden))
    }

    /// Feeds one token per sequence.
    pub(crate) fn feed_tokens(&mut self, tokens: &[u32]) -> Result<Logits, QwenError> {
        let device = match &self.mask {
            Some(mask) => mask.device(),
            None => Default::default(),
        };
        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::from_data(TensorData::new(ids, [tokens.len(), 1]), &device);
        let embeds = self.language_model.embed(ids)?;
        self.feed(embeds, Tensor::ones([tokens.len(), 1], &device))
    }

    /// Each sequence's logits at its last position.
    fn last_logits(&self, hidden: Tensor<B, 3>) -> Logits {
        let [batch, len, width] = hidden.dims();
        let last = hidden.slice([0..batch, len - 1..len, 0..width]);
        let last = match self.stacked_head {
            true => last.reshape([1, batch, width]),
            false => last,
        };
        let logits = self.language_model.logits(last);
        let vocab = self.language_model.vocab_size();
        // The device's buffer taken as it is (a value-by-value read of every row's vocabulary
        // and a copy per row were a fifth of a batched decode step); `convert` is a no-op on
        // f32 logits and makes half-precision ones f32, so `into_vec` cannot fail.
        let values = logits
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("logits converted to f32");
        Logits { values, vocab }
    }
}

impl<B: Backend, L: LanguageModel<B>> Decoder<'_, B, L>
where
    L::Cache: RowCache,
{
    /// Takes `other`'s sequences as rows after this decoder's own, both having been fed
    /// through a cache: the shorter side's mask and cache are left-padded, so each row keeps
    /// its positions and attends to its own tokens only.
    pub(crate) fn join(&mut self, other: Self) -> Result<(), QwenError> {
        let (Context::Cached(cache), Context::Cached(theirs), Some(mask), Some(their_mask)) =
            (&mut self.context, other.context, &self.mask, other.mask)
        else {
            return Err(not_regroupable());
        };
        let mask = stack_aligned(mask.clone(), their_mask, 1, 0);
        cache.join_rows(theirs);
        self.mask = Some(mask);
        self.stacked_head = true;
        Ok(())
    }

    /// Keeps the sequences `rows`, in that order, and drops the positions that are padding
    /// in every one of them.
    pub(crate) fn retain(&mut self, rows: &[usize]) -> Result<(), QwenError> {
        let (Context::Cached(cache), Some(mask)) = (&mut self.context, &self.mask) else {
            return Err(not_regroupable());
        };
        let mask = mask.clone().select(0, row_indices(rows, &mask.device()));
        let [batch, total] = mask.dims();
        let skip = leading_padding(&mask);
        cache.select_rows(rows, skip);
        self.mask = Some(mask.slice([0..batch, skip..total]));
        Ok(())
    }
}

fn not_regroupable() -> QwenError {
    QwenError::InvalidInput("only decoders fed through a cache join or leave a batch".into())
}

/// How many leading positions of a `[batch, total]` mask are padding in every row.
fn leading_padding<B: Backend>(mask: &Tensor<B, 2, Int>) -> usize {
    let columns: Vec<i64> = mask.clone().sum_dim(0).into_data().iter::<i64>().collect();
    columns
        .iter()
        .position(|&count| count != 0)
        .unwrap_or(columns.len())
}
