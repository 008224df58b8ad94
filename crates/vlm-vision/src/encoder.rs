use burn::tensor::{backend::Backend, Tensor};
use vlm_hf::PreprocessorConfig;

use crate::VisionError;

/// An image encoder for a LLaVA-style model: normalised pixels in, one feature vector per
/// image token out.
///
/// The VLM needs nothing else from a tower: the width of the features (to size the
/// projector), how many tokens each image becomes (to place image tokens in the prompt), the
/// image side and the preprocessing its pixels must go through (to prepare images). Implement
/// it for your own encoder to plug it in; the CLIP and SigLIP towers of this crate implement
/// it, see [`ClipVisionTower`] and [`SiglipVisionTower`].
///
/// [`ClipVisionTower`]: crate::ClipVisionTower
/// [`SiglipVisionTower`]: crate::SiglipVisionTower
pub trait VisionEncoder<B: Backend> {
    /// `[batch, 3, image_size, image_size]` pixels, normalised as the checkpoint's
    /// preprocessor does, to `[batch, tokens_per_image, output_dim]` features.
    ///
    /// A pixel tensor of another shape is an error, not a panic.
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError>;

    /// Width of each feature vector.
    fn output_dim(&self) -> usize;

    /// Number of feature vectors per image.
    fn tokens_per_image(&self) -> usize;

    /// Side, in pixels, of the square images `forward` takes.
    fn image_size(&self) -> usize;

    /// How images must be turned into the pixels `forward` takes: the Hugging Face image
    /// processor settings (`preprocessor_config.json`) the encoder was trained with. Give it
    /// to `vlm_image::ImageProcessor` to prepare images for this encoder.
    fn preprocessing(&self) -> &PreprocessorConfig;
}
