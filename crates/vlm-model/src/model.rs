//! The composed vision-language model: vision encoder, projector and language model.

use std::marker::PhantomData;

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_lora::{adapter_params, AdaptableModel};
use vlm_qwen::position_ids_from_mask;
use vlm_vision::VisionEncoder;

use crate::batch::read_together;
use crate::loss::{hidden_causal_lm_loss, loss_chunk_rows, CausalLmLoss};
use crate::splice::SplicePlan;
use crate::{
    AnyProjector, LanguageInputs, LanguageModel, ModelError, ParamRoles, Projector,
    ProjectorConfig, ProjectorKind, Role, RoleModel, VlmBatch,
};

/// A LLaVA-style model: `vision` turns each image into features, `projector` maps them to
/// the language model's width, and they replace the image placeholder tokens of the prompt
/// before `language_model` runs.
///
/// Generic over the three parts, so another encoder, projector or decoder plugs in without
/// a change here; widths are checked once, when the model is assembled with
/// [`new`](Self::new). A Burn [`Module`]: on an autodiff backend the loss back-propagates
/// into the projector (and whatever else is trainable), and the whole model saves and moves
/// between devices like any module.
#[derive(Module, Debug)]
pub struct VisionLanguageModel<B: Backend, E, P, L> {
    vision: E,
    projector: P,
    language_model: L,
    image_token_id: u32,
    tokens_per_image: usize,
    backend: PhantomData<B>,
}

impl<B, E, P, L> VisionLanguageModel<B, E, P, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    P: Projector<B>,
    L: LanguageModel<B>,
{
    /// Assembles a model whose prompts mark each image with a run of `image_token_id`
    /// placeholders, one per image token.
    ///
    /// Fails, naming both sides and their widths, when the encoder's output width is not the
    /// projector's input width or the projector's output width is not the language model's
    /// hidden size, and when the projector cannot take the encoder's token count.
    pub fn new(
        vision: E,
        projector: P,
        language_model: L,
        image_token_id: u32,
    ) -> Result<Self, ModelError> {
        check_width(
            "the vision encoder",
            vision.output_dim(),
            "the projector",
            projector.input_dim(),
        )?;
        check_width(
            "the projector",
            projector.output_dim(),
            "the language model",
            language_model.hidden_size(),
        )?;
        let tokens_per_image = projector.output_tokens(vision.tokens_per_image())?;
        if tokens_per_image == 0 {
            return Err(ModelError::InvalidInput(
                "the vision encoder and projector make no token of an image".into(),
            ));
        }
        Ok(Self {
            vision,
            projector,
            language_model,
            image_token_id,
            tokens_per_image,
            backend: PhantomData,
        })
    }

    /// The vision encoder.
    pub fn vision(&self) -> &E {
        &self.vision
    }

    /// The projector.
    pub fn projector(&self) -> &P {
        &self.projector
    }

    /// The language model.
    pub fn language_model(&self) -> &L {
        &self.language_model
    }

    /// The placeholder token id that marks image tokens in the prompt.
    pub fn image_token_id(&self) -> u32 {
        self.image_token_id
    }

    /// How many placeholder tokens (and embeddings) one image takes.
    pub fn tokens_per_image(&self) -> usize {
        self.tokens_per_image
    }

    /// Projected features `[images, tokens_per_image, hidden]` of pixels
    /// `[images, channels, side, side]`.
    pub fn image_features(&self, pixel_values: Tensor<B, 4>) -> Result<Tensor<B, 3>, ModelError> {
        self.projector.forward(self.vision.forward(pixel_values)?)
    }

    /// Token embeddings of `input_ids` `[batch, seq]` with the image features spliced in at
    /// the placeholder positions: the `k`-th image of `pixel_values` fills the `k`-th run of
    /// placeholders of the batch.
    ///
    /// Errors name the sample whose placeholder count is not a whole number of images, or
    /// give both counts when the placeholders call for another number of images than given.
    pub fn inputs_embeds(
        &self,
        input_ids: Tensor<B, 2, Int>,
        pixel_values: Option<Tensor<B, 4>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.embeds_with(input_ids, Images::from_pixels(pixel_values))
    }

    /// [`inputs_embeds`](Self::inputs_embeds) with the images' projected features
    /// `[images, tokens_per_image, hidden]` given instead of their pixels: features computed
    /// once by [`image_features`](Self::image_features) and kept (a server's cache of recent
    /// images) splice in exactly as their pixels would.
    pub fn inputs_embeds_with_features(
        &self,
        input_ids: Tensor<B, 2, Int>,
        features: Option<Tensor<B, 3>>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.embeds_with(input_ids, Images::from_features(features))
    }

    /// Token embeddings of `input_ids` with `images` spliced in.
    fn embeds_with(
        &self,
        input_ids: Tensor<B, 2, Int>,
        images: Images<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        check_not_empty(&input_ids)?;
        let ids = input_ids.to_data().iter::<i64>().collect::<Vec<_>>();
        self.spliced_embeds(input_ids, &ids, images)
    }

    /// [`inputs_embeds`](Self::inputs_embeds) of `input_ids`, given them read to the host
    /// (`ids`, row-major), which the splice is planned from.
    fn spliced_embeds(
        &self,
        input_ids: Tensor<B, 2, Int>,
        ids: &[i64],
        images: Images<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let [_, seq] = input_ids.dims();
        let placeholder = i64::from(self.image_token_id);
        let plan = SplicePlan::new(ids, seq, placeholder, self.tokens_per_image)?;
        let given = images.count();
        if given != plan.images() {
            return Err(ModelError::ImageCount {
                in_ids: plan.images(),
                given,
            });
        }
        let features = match images {
            Images::Pixels(pixels) => Some(self.image_features(pixels)?),
            Images::Features(features) => Some(features),
            Images::None => None,
        };
        // Placeholder ids may lie outside the vocabulary: embed them as token 0, then replace.
        let text_ids = input_ids
            .clone()
            .mask_fill(input_ids.equal_elem(placeholder), 0);
        let embeds = self.language_model.embed(text_ids)?;
        Ok(plan.apply(embeds, features))
    }

    /// Everything the language model takes for `batch`: spliced embeddings, the attention
    /// mask (all ones when the batch has none) and position ids derived from it.
    pub fn prepare(&self, batch: VlmBatch<B>) -> Result<LanguageInputs<B>, ModelError> {
        self.prepare_read(batch, None)
    }

    /// [`prepare`](Self::prepare), given the ids already read to the host when the caller
    /// has them.
    fn prepare_read(
        &self,
        batch: VlmBatch<B>,
        ids: Option<Vec<i64>>,
    ) -> Result<LanguageInputs<B>, ModelError> {
        let attention_mask = self.attention_mask(&batch.input_ids, batch.attention_mask)?;
        let inputs_embeds = match ids {
            Some(ids) => {
                check_not_empty(&batch.input_ids)?;
                self.spliced_embeds(
                    batch.input_ids,
                    &ids,
                    Images::from_pixels(batch.pixel_values),
                )?
            }
            None => self.inputs_embeds(batch.input_ids, batch.pixel_values)?,
        };
        Ok(LanguageInputs {
            inputs_embeds,
            position_ids: position_ids_from_mask(attention_mask.clone()),
            attention_mask,
        })
    }

    /// The batch's attention mask, checked against its ids; all ones when absent.
    pub(crate) fn attention_mask(
        &self,
        input_ids: &Tensor<B, 2, Int>,
        attention_mask: Option<Tensor<B, 2, Int>>,
    ) -> Result<Tensor<B, 2, Int>, ModelError> {
        let dims = input_ids.dims();
        match attention_mask {
            Some(mask) if mask.dims() == dims => Ok(mask),
            Some(mask) => Err(ModelError::InvalidInput(format!(
                "attention_mask of shape {:?} does not match input_ids of shape {dims:?}",
                mask.dims()
            ))),
            None => Ok(Tensor::ones(dims, &input_ids.device())),
        }
    }

    /// Logits `[batch, seq, vocab]` of a batch of prompts with images.
    pub fn forward(&self, batch: VlmBatch<B>) -> Result<Tensor<B, 3>, ModelError> {
        Ok(self.language_model.logits(self.last_hidden_state(batch)?))
    }

    /// The language model's last hidden state `[batch, seq, hidden]` of a batch of prompts
    /// with images: what [`forward`](Self::forward) applies the LM head to.
    pub fn last_hidden_state(&self, batch: VlmBatch<B>) -> Result<Tensor<B, 3>, ModelError> {
        self.hidden(self.prepare(batch)?)
    }

    /// The shifted cross-entropy against `labels` `[batch, seq]` (-100 where nothing is
    /// learned: prompt, image and padding positions), as
    /// [`causal_lm_loss`](crate::causal_lm_loss) of the logits would give it, computed by
    /// [`chunked_causal_lm_loss`](crate::chunked_causal_lm_loss) so that training never
    /// holds `[batch, seq, vocab]` logits.
    ///
    /// Reads the batch back to the host once: the ids (for the splice) and the labels (for
    /// the loss's targets) together.
    pub fn forward_loss(
        &self,
        batch: VlmBatch<B>,
        labels: Tensor<B, 2, Int>,
    ) -> Result<CausalLmLoss<B>, ModelError> {
        let label_dims = labels.dims();
        let (ids, host_labels) = match read_together(&batch.input_ids, &labels) {
            Some((ids, host_labels)) if !ids.is_empty() => (Some(ids), host_labels),
            _ => (None, labels.to_data().iter::<i64>().collect()),
        };
        let hidden = self.hidden(self.prepare_read(batch, ids)?)?;
        let head = self.language_model.lm_head();
        let rows_per_chunk = loss_chunk_rows(head.vocab_size());
        hidden_causal_lm_loss(hidden, &head, label_dims, &host_labels, rows_per_chunk)
    }

    /// The language model's last hidden state of its prepared inputs.
    fn hidden(&self, inputs: LanguageInputs<B>) -> Result<Tensor<B, 3>, ModelError> {
        Ok(self.language_model.forward_hidden(
            inputs.inputs_embeds,
            inputs.attention_mask,
            inputs.position_ids,
            None,
        )?)
    }
}

/// Refuses empty ids, naming their shape.
fn check_not_empty<B: Backend>(input_ids: &Tensor<B, 2, Int>) -> Result<(), ModelError> {
    if input_ids.dims().contains(&0) {
        return Err(ModelError::InvalidInput(format!(
            "empty input_ids of shape {:?}",
            input_ids.dims()
        )));
    }
    Ok(())
}

fn check_width(
    producer: &'static str,
    produced: usize,
    consumer: &'static str,
    expected: usize,
) -> Result<(), ModelError> {
    if produced == expected {
        return Ok(());
    }
    Err(ModelError::DimensionMismatch {
        producer,
        produced,
        consumer,
        expected,
    })
}

impl<B, E, L> VisionLanguageModel<B, E, AnyProjector<B>, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    L: LanguageModel<B>,
{
    /// A model to train: `vision` and `language_model` joined by a fresh projector of `kind`
    /// (LLaVA-1.5's `mlp2x_gelu`, say) from the encoder's width to the language model's; see
    /// [`new`](Self::new).
    pub fn with_new_projector(
        vision: E,
        kind: ProjectorKind,
        language_model: L,
        image_token_id: u32,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let config = ProjectorConfig {
            kind,
            input_dim: vision.output_dim(),
            output_dim: language_model.hidden_size(),
        };
        let projector = AnyProjector::new(&config, device)?;
        Self::new(vision, projector, language_model, image_token_id)
    }
}

/// The tower, projector and language model by role; the adapters the language model carries
/// as [`Role::Adapter`].
impl<B, E, P, L> RoleModel<B> for VisionLanguageModel<B, E, P, L>
where
    B: Backend,
    E: Module<B>,
    P: Module<B>,
    L: AdaptableModel<B>,
    Self: Module<B>,
{
    fn param_roles(&self) -> ParamRoles {
        ParamRoles::default()
            .with(Role::Vision, &self.vision)
            .with(Role::Projector, &self.projector)
            .with(Role::LanguageModel, &self.language_model)
            .with_ids(Role::Adapter, adapter_params(&self.language_model))
    }
}

/// A batch's images, as pixels to encode or as features already projected.
enum Images<B: Backend> {
    /// No image (or an empty batch of them).
    None,
    /// Pixels `[images, channels, side, side]`.
    Pixels(Tensor<B, 4>),
    /// Projected features `[images, tokens_per_image, hidden]`.
    Features(Tensor<B, 3>),
}

impl<B: Backend> Images<B> {
    fn from_pixels(pixels: Option<Tensor<B, 4>>) -> Self {
        match pixels {
            Some(pixels) if pixels.dims()[0] > 0 => Self::Pixels(pixels),
            _ => Self::None,
        }
    }

    fn from_features(features: Option<Tensor<B, 3>>) -> Self {
        match features {
            Some(features) if features.dims()[0] > 0 => Self::Features(features),
            _ => Self::None,
        }
    }

    /// How many images there are.
    fn count(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Pixels(pixels) => pixels.dims()[0],
            Self::Features(features) => features.dims()[0],
        }
    }
}
