//! `VisionEncoder` can be implemented outside this crate and used as a trait object next to
//! the built-in towers.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use vlm_hf::{ImageSize, PreprocessorConfig};
use vlm_testkit::{device, fixture, TestBackend};
use vlm_vision::{
    ClipVisionTower, FeatureSelection, SiglipVisionTower, VisionEncoder, VisionError,
};

/// A toy encoder: the mean colour of each `patch x patch` tile is one 3-wide token.
struct MeanColour {
    image_size: usize,
    patch: usize,
    preprocessing: PreprocessorConfig,
}

impl MeanColour {
    /// Takes `image_size` pixels squared, resized SigLIP-style (no crop, mean/std 0.5).
    fn new(image_size: usize, patch: usize) -> Self {
        let side = u32::try_from(image_size).expect("side");
        let preprocessing = PreprocessorConfig {
            size: ImageSize::Exact {
                height: side,
                width: side,
            },
            ..PreprocessorConfig::siglip_default()
        };
        Self {
            image_size,
            patch,
            preprocessing,
        }
    }
}

impl<B: Backend> VisionEncoder<B> for MeanColour {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        let [batch, channels, height, width] = pixels.dims();
        if [channels, height, width] != [3, self.image_size, self.image_size] {
            return Err(VisionError::PixelShape {
                actual: pixels.dims(),
                channels: 3,
                image_size: self.image_size,
            });
        }
        let grid = self.image_size / self.patch;
        let tiles = pixels
            .reshape([batch, 3, grid, self.patch, grid, self.patch])
            .mean_dim(5)
            .mean_dim(3)
            .reshape([batch, 3, grid * grid]);
        Ok(tiles.swap_dims(1, 2))
    }

    fn output_dim(&self) -> usize {
        3
    }

    fn tokens_per_image(&self) -> usize {
        (self.image_size / self.patch).pow(2)
    }

    fn image_size(&self) -> usize {
        self.image_size
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        &self.preprocessing
    }
}

#[test]
fn user_encoders_and_towers_share_the_trait() {
    let selection = FeatureSelection::default();
    let dev = device();
    let encoders: Vec<Box<dyn VisionEncoder<TestBackend>>> = vec![
        Box::new(MeanColour::new(32, 8)),
        Box::new(ClipVisionTower::load(fixture("clip_vision"), selection, &dev).expect("clip")),
        Box::new(
            SiglipVisionTower::load(fixture("siglip_vision"), selection, &dev).expect("siglip"),
        ),
    ];
    for encoder in &encoders {
        let size = encoder.image_size();
        let side = u32::try_from(size).expect("side");
        assert_eq!(
            encoder.preprocessing().fixed_output_size(),
            Some((side, side))
        );
        let pixels = Tensor::<TestBackend, 4>::ones([2, 3, size, size], &dev);
        let features = encoder.forward(pixels).expect("forward");
        assert_eq!(
            features.dims(),
            [2, encoder.tokens_per_image(), encoder.output_dim()]
        );
    }
    let bad = Tensor::<TestBackend, 4>::ones([1, 3, 8, 8], &dev);
    assert!(matches!(
        encoders[0].forward(bad),
        Err(VisionError::PixelShape { .. })
    ));
}
