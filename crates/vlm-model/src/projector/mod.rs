//! Projectors: the trainable bridge from vision features to the language model's embeddings.

mod any;
mod config;
mod linear;
mod mlp;
mod pixel_shuffle;

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::{backend::Backend, Tensor, TensorData};
use vlm_hf::join_key;

pub use any::AnyProjector;
pub use config::{ProjectorConfig, ProjectorKind};
pub use mlp::MlpProjector;
pub use pixel_shuffle::PixelShuffleProjector;

use crate::ModelError;
use linear::linear_tensors;

/// Key prefix of the projector's tensors in llava-hf checkpoints and in ours (not its
/// module path in a [`VisionLanguageModel`](crate::VisionLanguageModel), which is `projector`).
pub const HF_PROJECTOR_PREFIX: &str = "multi_modal_projector";

/// Maps the vision encoder's features into the language model's embedding space.
///
/// The projector is the part of a LLaVA-style model that training always updates; the
/// [`VisionLanguageModel`](crate::VisionLanguageModel) only needs its widths and how many
/// tokens it makes of one image, so any [`Module`] implementing this trait plugs in.
pub trait Projector<B: Backend>: Module<B> {
    /// `[images, tokens_in, input_dim]` features to `[images, tokens_out, output_dim]`
    /// embeddings, `tokens_out` being [`output_tokens`](Self::output_tokens)`(tokens_in)`.
    fn forward(&self, features: Tensor<B, 3>) -> Result<Tensor<B, 3>, ModelError>;

    /// Width of the features it takes (the vision encoder's output width).
    fn input_dim(&self) -> usize;

    /// Width of the embeddings it makes (the language model's hidden size).
    fn output_dim(&self) -> usize;

    /// How many embeddings it makes of `input_tokens` features of one image; an error when
    /// it cannot take that many (e.g. a pixel shuffle on a non-square grid).
    fn output_tokens(&self, input_tokens: usize) -> Result<usize, ModelError>;
}

/// A projector a checkpoint can store: its kind and widths for `vlm_config.json`, and its
/// weights under llava-hf names in Hugging Face layout (`[out, in]` linear weights).
pub trait PersistentProjector<B: Backend>: Projector<B> {
    /// Kind and widths, enough to rebuild it with [`AnyProjector::from_store`].
    fn config(&self) -> ProjectorConfig;

    /// Its name table: each linear layer under its llava-hf name below
    /// [`HF_PROJECTOR_PREFIX`] (`linear_1`), the names its `from_store` reads.
    fn linears(&self) -> Vec<(&'static str, &Linear<B>)>;

    /// Every weight as `(name, f32 data)` in Hugging Face layout, names starting with
    /// [`HF_PROJECTOR_PREFIX`]: [`linears`](Self::linears) under that prefix.
    fn hf_tensors(&self) -> Vec<(String, TensorData)> {
        self.linears()
            .into_iter()
            .flat_map(|(name, linear)| linear_tensors(linear, &join_key(HF_PROJECTOR_PREFIX, name)))
            .collect()
    }
}

/// Checks that `features` (`[images, tokens, width]`) are as wide as `projector` takes.
fn check_input_width<B: Backend>(
    features: &Tensor<B, 3>,
    expected: usize,
    projector: &'static str,
) -> Result<(), ModelError> {
    let [_, _, width] = features.dims();
    if width == expected {
        Ok(())
    } else {
        Err(ModelError::DimensionMismatch {
            producer: "the image features",
            produced: width,
            consumer: projector,
            expected,
        })
    }
}
