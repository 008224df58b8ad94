//! Multi-turn chat about images, keeping the language model's cache between turns.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use vlm_qwen::{decode, Decoder, GenerationConfig, Prompt};
use vlm_vision::VisionEncoder;

use crate::{LanguageModel, ModelError, Projector, VisionLanguageModel};

/// One conversation (batch of one) with a model, at the token level.
///
/// Each [`turn`](Self::turn) takes only the new prompt tokens (the template's end of the
/// previous reply, the user message, the start of the assistant message) and, when the turn
/// shows an image, its pixels, with the turn's run of placeholder ids. The session keeps the
/// cache of everything before, so an image is encoded and spliced once, at its turn, and
/// stays in the context afterwards; no earlier token is recomputed. Templating (ChatML,
/// system prompt) is the caller's, as is trimming a conversation that grows too long.
///
/// The first turn's `use_cache` decides how the context is kept for the whole session
/// (cache, or all embeddings recomputed each step).
pub struct ChatSession<'m, B: Backend, E, P, L: LanguageModel<B>> {
    model: &'m VisionLanguageModel<B, E, P, L>,
    decoder: Option<Decoder<'m, B, L>>,
    history: Vec<u32>,
    pending: Option<u32>,
}

impl<B, E, P, L> VisionLanguageModel<B, E, P, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    P: Projector<B>,
    L: LanguageModel<B>,
{
    /// Starts an empty conversation.
    pub fn chat(&self) -> ChatSession<'_, B, E, P, L> {
        ChatSession {
            model: self,
            decoder: None,
            history: Vec::new(),
            pending: None,
        }
    }
}

impl<'m, B, E, P, L> ChatSession<'m, B, E, P, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    P: Projector<B>,
    L: LanguageModel<B>,
{
    /// Feeds this turn's prompt ids (with `image`, `[1, channels, side, side]`, for its
    /// placeholder run) and generates the reply, passing each token to `on_token`.
    ///
    /// The reply ends with the stop token when one was emitted. Invalid input (a placeholder
    /// count that is not one image per run given, an invalid generation setting) is an
    /// error that leaves the session as it was.
    pub fn turn(
        &mut self,
        prompt_ids: &[u32],
        image: Option<Tensor<B, 4>>,
        config: &GenerationConfig,
        mut on_token: impl FnMut(u32),
    ) -> Result<Vec<u32>, ModelError> {
        let ids: Vec<u32> = self.pending.iter().chain(prompt_ids).copied().collect();
        let embeds = self.embed_turn(&ids, image)?;
        let mut history = self.history.clone();
        history.extend(prompt_ids);
        let language_model = self.model.language_model();
        let decoder = self
            .decoder
            .get_or_insert_with(|| Decoder::new(language_model, config.use_cache));
        let prompt = Prompt {
            attention_mask: Tensor::ones([1, ids.len()], &embeds.device()),
            embeds,
            history: vec![history],
        };
        let replies = decode(decoder, prompt, config, |tokens| {
            on_token(tokens[0]);
            std::ops::ControlFlow::Continue(())
        })?;
        let reply = replies.into_iter().next().unwrap_or_default();
        self.history.extend(prompt_ids);
        self.history.extend(&reply);
        self.pending = reply.last().copied();
        Ok(reply)
    }

    /// Embeddings `[1, ids, hidden]` of a turn's ids with its image spliced in.
    fn embed_turn(
        &self,
        ids: &[u32],
        image: Option<Tensor<B, 4>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        if ids.is_empty() {
            return Err(ModelError::InvalidInput("an empty chat turn".into()));
        }
        let devices = self.model.language_model().devices();
        let device = devices.into_iter().next().unwrap_or_default();
        let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
        let len = ids.len();
        let ids = Tensor::from_data(TensorData::new(ids, [1, len]), &device);
        self.model.inputs_embeds(ids, image)
    }

    /// Every token of the conversation so far, placeholders included: prompts and replies.
    /// Given to [`VisionLanguageModel::generate`] with the next turn's ids and the images so
    /// far, it reproduces what the session continues from.
    pub fn history(&self) -> &[u32] {
        &self.history
    }
}
