//! Generation with images: the prompt's embeddings with the image features spliced in, then
//! `vlm-qwen`'s decode loop.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_qwen::{decode, Decoder, GenerationConfig, Prompt};
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
        let prompt = self.prompt(batch)?;
        let mut decoder = Decoder::new(self.language_model(), config.use_cache);
        Ok(decode(&mut decoder, prompt, config, on_token)?)
    }

    /// Where the decode loop starts for `batch`: its embeddings with the image features
    /// spliced in (the prefill's input), its mask, and the tokens the repetition penalty sees.
    /// [`generate`](Self::generate) decodes it; a server hands each request's prompt to a
    /// [`ContinuousBatch`](vlm_qwen::ContinuousBatch) instead.
    pub fn prompt(&self, batch: VlmBatch<B>) -> Result<Prompt<B>, ModelError> {
        let mask = self.attention_mask(&batch.input_ids, batch.attention_mask)?;
        let embeds = self.inputs_embeds(batch.input_ids.clone(), batch.pixel_values)?;
        Ok(Prompt::new(embeds, &batch.input_ids, mask))
    }

    /// [`prompt`](Self::prompt) of one unpadded prompt `input_ids` `[1, seq]` whose images
    /// come as projected `features` (`[images, tokens_per_image, hidden]`, from
    /// [`image_features`](Self::image_features), e.g. kept by an
    /// [`ImageFeatureCache`](crate::ImageFeatureCache)) rather than pixels.
    pub fn prompt_with_features(
        &self,
        input_ids: Tensor<B, 2, Int>,
        features: Option<Tensor<B, 3>>,
    ) -> Result<Prompt<B>, ModelError> {
        let mask = self.attention_mask(&input_ids, None)?;
        let embeds = self.inputs_embeds_with_features(input_ids.clone(), features)?;
        Ok(Prompt::new(embeds, &input_ids, mask))
    }
}
