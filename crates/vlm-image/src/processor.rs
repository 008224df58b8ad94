use std::path::Path;

use rayon::prelude::*;
use vlm_hf::PreprocessorConfig;

use crate::{
    center_crop, decode_image_bytes, decode_image_path, resize, DecodeLimits, ImageError, RgbImage,
};

/// A preprocessed image: `f32` values, channels first (`[3, height, width]`), ready to be a
/// vision tower's `pixel_values` (add the batch dimension).
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    /// `shape[0] * shape[1] * shape[2]` values, channel-major.
    pub data: Vec<f32>,
    /// `[channels (3), height, width]`.
    pub shape: [usize; 3],
}

/// Hugging Face-exact image preprocessing for a `preprocessor_config.json`.
///
/// See the [crate docs](crate) for the steps and the measured agreement with transformers.
#[derive(Debug, Clone)]
pub struct ImageProcessor {
    config: PreprocessorConfig,
    limits: DecodeLimits,
}

impl ImageProcessor {
    /// A processor for `config`, with the default [`DecodeLimits`].
    pub fn new(config: PreprocessorConfig) -> Self {
        Self {
            config,
            limits: DecodeLimits::default(),
        }
    }

    /// Replaces the decode limits (decompression-bomb guard).
    pub fn with_limits(mut self, limits: DecodeLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn config(&self) -> &PreprocessorConfig {
        &self.config
    }

    pub fn limits(&self) -> &DecodeLimits {
        &self.limits
    }

    /// Decodes an image file as transformers' `load_image` does (EXIF orientation, RGB).
    pub fn decode_path(&self, path: impl AsRef<Path>) -> Result<RgbImage, ImageError> {
        decode_image_path(path, &self.limits)
    }

    /// Decodes in-memory JPEG / PNG bytes; `name` identifies them in errors.
    pub fn decode_bytes(
        &self,
        bytes: &[u8],
        name: impl AsRef<Path>,
    ) -> Result<RgbImage, ImageError> {
        decode_image_bytes(bytes, name, &self.limits)
    }

    /// The 8-bit stage: resize (if `do_resize`) then center crop (if `do_center_crop`), exactly
    /// the uint8 pixels transformers holds before rescaling.
    pub fn resize_and_crop(&self, image: &RgbImage) -> RgbImage {
        let c = &self.config;
        let resized;
        let mut current = image;
        if c.do_resize {
            let (h, w) = c.resize_output_size(image.height(), image.width());
            resized = resize(image, w, h, c.resample);
            current = &resized;
        }
        if c.do_center_crop {
            center_crop(current, c.crop_size.height, c.crop_size.width)
        } else {
            current.clone()
        }
    }

    /// Rescales and normalizes 8-bit RGB into channels-first `f32`, with transformers'
    /// arithmetic: `x * rescale_factor` in `f64` rounded to `f32`, then `(x - mean) / std` in
    /// `f32`.
    pub fn to_pixel_values(&self, image: &RgbImage) -> PixelValues {
        let c = &self.config;
        let (h, w) = (image.height() as usize, image.width() as usize);
        let plane = h * w;
        let mut data = vec![0f32; 3 * plane];
        for ch in 0..3 {
            // Per-channel lookup table: 256 possible inputs.
            let table: Vec<f32> = (0..=255u8)
                .map(|v| {
                    let mut x = if c.do_rescale {
                        (f64::from(v) * c.rescale_factor) as f32
                    } else {
                        f32::from(v)
                    };
                    if c.do_normalize {
                        x = (x - c.image_mean[ch]) / c.image_std[ch];
                    }
                    x
                })
                .collect();
            let out = &mut data[ch * plane..(ch + 1) * plane];
            for (o, p) in out.iter_mut().zip(image.as_raw().chunks_exact(3)) {
                *o = table[usize::from(p[ch])];
            }
        }
        PixelValues {
            data,
            shape: [3, h, w],
        }
    }

    /// Preprocesses an already decoded RGB image.
    pub fn process_image(&self, image: &RgbImage) -> PixelValues {
        self.to_pixel_values(&self.resize_and_crop(image))
    }

    /// Decodes and preprocesses one image file.
    pub fn process_path(&self, path: impl AsRef<Path>) -> Result<PixelValues, ImageError> {
        Ok(self.process_image(&self.decode_path(path)?))
    }

    /// Decodes and preprocesses in-memory JPEG / PNG bytes; `name` identifies them in errors.
    pub fn process_bytes(
        &self,
        bytes: &[u8],
        name: impl AsRef<Path>,
    ) -> Result<PixelValues, ImageError> {
        Ok(self.process_image(&self.decode_bytes(bytes, name)?))
    }

    /// Preprocesses many files in parallel on rayon's global thread pool (run it inside
    /// `ThreadPool::install` to choose another). Results come back in input order, one per
    /// path; a bad file fails only its own entry.
    pub fn process_batch<P: AsRef<Path> + Sync>(
        &self,
        paths: &[P],
    ) -> Vec<Result<PixelValues, ImageError>> {
        paths.par_iter().map(|p| self.process_path(p)).collect()
    }
}
