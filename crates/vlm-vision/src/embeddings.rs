use burn::module::{Module, Param};
use burn::nn::conv::Conv2d;
use burn::tensor::{backend::Backend, Tensor};
use vlm_hf::HfError;

use crate::vit::VitDims;
use crate::weights::{hf_field, TowerWeights, PATCH_EMBEDDINGS};
use crate::VisionError;

/// Image to tokens (`embeddings`): a patch convolution, flattened row-major into one token per
/// patch, an optional learned CLS token in front (CLIP), plus learned position embeddings.
#[derive(Module, Debug)]
pub struct PatchEmbeddings<B: Backend> {
    patch_embedding: Conv2d<B>,
    class_embedding: Option<Param<Tensor<B, 1>>>,
    position_embedding: Param<Tensor<B, 2>>,
    num_channels: usize,
    image_size: usize,
}

/// What distinguishes the CLIP and SigLIP embeddings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EmbeddingKind {
    /// A learned `class_embedding` token precedes the patches (CLIP).
    pub cls_token: bool,
    /// The patch convolution has a bias (SigLIP).
    pub conv_bias: bool,
}

impl<B: Backend> PatchEmbeddings<B> {
    /// Reads `patch_embedding.*`, `position_embedding.weight` and, with a CLS token,
    /// `class_embedding`.
    pub(crate) fn load(
        weights: &TowerWeights<'_, B>,
        dims: &VitDims,
        kind: EmbeddingKind,
    ) -> Result<Self, HfError> {
        let hidden = dims.hidden_size;
        let conv_shape = [dims.num_channels, hidden, dims.patch_size];
        let class_embedding = match kind.cls_token {
            true => Some(weights.param("class_embedding", [hidden])?),
            false => None,
        };
        let positions = dims.num_patches() + usize::from(kind.cls_token);
        Ok(Self {
            patch_embedding: weights.patch_conv("patch_embedding", conv_shape, kind.conv_bias)?,
            class_embedding,
            position_embedding: weights.param(
                hf_field(PATCH_EMBEDDINGS, "position_embedding"),
                [positions, hidden],
            )?,
            num_channels: dims.num_channels,
            image_size: dims.image_size,
        })
    }

    /// `[batch, channels, image_size, image_size]` -> `[batch, tokens, hidden]`, in the
    /// weights' float type (the pixels are cast to it first, as transformers does).
    pub fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        self.check(pixels.dims())?;
        let pixels = pixels.cast(self.patch_embedding.weight.val().dtype());
        let patches = self
            .patch_embedding
            .forward(pixels)
            .flatten::<3>(2, 3)
            .swap_dims(1, 2);
        let tokens = match &self.class_embedding {
            Some(cls) => {
                let [batch, _, hidden] = patches.dims();
                let cls = cls.val().reshape([1, 1, hidden]).expand([batch, 1, hidden]);
                Tensor::cat(vec![cls, patches], 1)
            }
            None => patches,
        };
        Ok(tokens + self.position_embedding.val().unsqueeze::<3>())
    }

    /// Tokens per image: one per patch, plus the CLS token if there is one.
    pub fn num_tokens(&self) -> usize {
        let [positions, _] = self.position_embedding.val().dims();
        positions
    }

    /// The side of the square images the tower takes.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// Width of every token.
    pub fn hidden_size(&self) -> usize {
        let [_, hidden] = self.position_embedding.val().dims();
        hidden
    }

    fn check(&self, actual: [usize; 4]) -> Result<(), VisionError> {
        let [_, channels, height, width] = actual;
        let size = self.image_size;
        if channels == self.num_channels && height == size && width == size {
            return Ok(());
        }
        Err(VisionError::PixelShape {
            actual,
            channels: self.num_channels,
            image_size: size,
        })
    }
}
