//! Generation with images: prefill with the spliced embeddings, then one token per step
//! through the language model's cache, with `vlm-qwen`'s sampling settings.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use vlm_qwen::{position_ids_from_mask, GenerationConfig, TokenChooser};
use vlm_vision::VisionEncoder;

use crate::{LanguageModel, ModelError, Projector, VisionLanguageModel, VlmBatch};

impl<B, E, P, L> VisionLanguageModel<B, E, P, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    P: Projector<B>,
    L: LanguageModel<B>,
{
    /// Continues each prompt of a (left-padded) batch with images and returns the new
    /// tokens per sequence, as Hugging Face's LLaVA `generate()` does.
    ///
    /// The prompt's embeddings, image features spliced in, are computed once (prefill);
    /// then each step feeds only the chosen tokens through the cache (or recomputes the
    /// whole sequence when `config.use_cache` is false). Every sequence gets the same number
    /// of tokens: one that emits a stop token (kept) continues with `pad_token_id`, and
    /// generation ends when all have stopped or after `max_new_tokens`. `on_token` receives
    /// each step's tokens, one per sequence. The repetition penalty sees each prompt's real
    /// tokens (placeholders included, as in Hugging Face) and the generated ones.
    pub fn generate(
        &self,
        batch: VlmBatch<B>,
        config: &GenerationConfig,
        mut on_token: impl FnMut(&[u32]),
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        self.generate_until(batch, config, |tokens| {
            on_token(tokens);
            ControlFlow::Continue(())
        })
    }

    /// As [`generate`](Self::generate), but `on_token` may end generation early by returning
    /// [`ControlFlow::Break`] (a client gone, a stop string seen); the tokens chosen up to
    /// then are returned.
    pub fn generate_until(
        &self,
        batch: VlmBatch<B>,
        config: &GenerationConfig,
        on_token: impl FnMut(&[u32]) -> ControlFlow<()>,
    ) -> Result<Vec<Vec<u32>>, ModelError> {
        let mask = self.attention_mask(&batch.input_ids, batch.attention_mask)?;
        let embeds = self.inputs_embeds(batch.input_ids.clone(), batch.pixel_values)?;
        let history = real_tokens(&batch.input_ids, &mask);
        let mut decoder = Decoder::new(self.language_model(), config.use_cache);
        decode(&mut decoder, embeds, mask, config, history, on_token)
    }
}

/// Each row's ids where the mask is 1.
fn real_tokens<B: Backend>(ids: &Tensor<B, 2, Int>, mask: &Tensor<B, 2, Int>) -> Vec<Vec<u32>> {
    let [_, len] = ids.dims();
    let ids: Vec<i64> = ids.to_data().iter::<i64>().collect();
    let mask: Vec<i64> = mask.to_data().iter::<i64>().collect();
    ids.chunks(len)
        .zip(mask.chunks(len))
        .map(|(ids, mask)| {
            ids.iter()
                .zip(mask)
                .filter(|(_, &keep)| keep != 0)
                .map(|(&id, _)| id as u32)
                .collect()
        })
        .collect()
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
pub(crate) struct Decoder<'a, B: Backend, L: LanguageModel<B>> {
    language_model: &'a L,
    context: Context<B, L::Cache>,
    mask: Option<Tensor<B, 2, Int>>,
}

impl<'a, B: Backend, L: LanguageModel<B>> Decoder<'a, B, L> {
    /// A decoder that has seen nothing yet.
    pub(crate) fn new(language_model: &'a L, use_cache: bool) -> Self {
        let context = match use_cache {
            true => Context::Cached(language_model.new_cache()),
            false => Context::Full(None),
        };
        Self {
            language_model,
            context,
            mask: None,
        }
    }

    /// Feeds embeddings `[batch, n, hidden]` with their mask `[batch, n]` and returns each
    /// sequence's logits at its last position.
    pub(crate) fn feed(
        &mut self,
        embeds: Tensor<B, 3>,
        new_mask: Tensor<B, 2, Int>,
    ) -> Result<Vec<Vec<f32>>, ModelError> {
        let mask = match self.mask.take() {
            Some(seen) => Tensor::cat(vec![seen, new_mask], 1),
            None => new_mask,
        };
        self.mask = Some(mask.clone());
        let [batch, total] = mask.dims();
        let [_, new, _] = embeds.dims();
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
    pub(crate) fn feed_tokens(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let device = match &self.mask {
            Some(mask) => mask.device(),
            None => Default::default(),
        };
        let ids: Vec<i64> = tokens.iter().map(|&id| i64::from(id)).collect();
        let ids = Tensor::from_data(TensorData::new(ids, [tokens.len(), 1]), &device);
        let embeds = self.language_model.embed(ids)?;
        self.feed(embeds, Tensor::ones([tokens.len(), 1], &device))
    }

    fn last_logits(&self, hidden: Tensor<B, 3>) -> Vec<Vec<f32>> {
        let [batch, len, width] = hidden.dims();
        let last = hidden.slice([0..batch, len - 1..len, 0..width]);
        let logits = self.language_model.logits(last);
        let values: Vec<f32> = logits.into_data().iter::<f32>().collect();
        let vocab = self.language_model.vocab_size();
        values.chunks(vocab).map(<[f32]>::to_vec).collect()
    }
}

/// Feeds the prompt (`embeds` `[batch, n, hidden]` with its mask `[batch, n]`), then
/// chooses tokens and feeds them back until every sequence has stopped or
/// `max_new_tokens` are out, or `on_token` breaks; returns the new tokens of each sequence. `history` holds each
/// sequence's tokens so far, for the repetition penalty. The settings are checked before
/// anything is fed; the last chosen tokens are not fed.
pub(crate) fn decode<B: Backend, L: LanguageModel<B>>(
    decoder: &mut Decoder<'_, B, L>,
    embeds: Tensor<B, 3>,
    mask: Tensor<B, 2, Int>,
    config: &GenerationConfig,
    history: Vec<Vec<u32>>,
    mut on_token: impl FnMut(&[u32]) -> ControlFlow<()>,
) -> Result<Vec<Vec<u32>>, ModelError> {
    let mut run = TokenChooser::new(config, history, decoder.language_model.vocab_size())?;
    let mut logits = decoder.feed(embeds, mask)?;
    for step in 1..=config.max_new_tokens {
        let tokens = run.choose(logits);
        let flow = on_token(&tokens);
        if flow.is_break() || step == config.max_new_tokens || run.all_finished() {
            break;
        }
        logits = decoder.feed_tokens(&tokens)?;
    }
    Ok(run.into_generated())
}
