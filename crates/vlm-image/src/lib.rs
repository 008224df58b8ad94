//! vlm-image: image loading and Hugging Face-exact preprocessing for CLIP and SigLIP vision towers
//! (CPU only).
//!
//! [`ImageProcessor`] reproduces what transformers 4.57's slow (PIL-based)
//! `CLIPImageProcessor` / `SiglipImageProcessor` produce for an image loaded with
//! `transformers.image_utils.load_image`:
//!
//! 1. decode JPEG / PNG, apply the EXIF orientation, convert to 8-bit RGB as Pillow does
//!    ([`decode_image_path`], [`decode_image_bytes`]);
//! 2. resize with Pillow's own resampling arithmetic ([`resize`]): to a shortest edge keeping
//!    the aspect ratio (CLIP) or to an exact size (SigLIP);
//! 3. center crop ([`center_crop`], CLIP only);
//! 4. rescale (x / 255) and normalize ((x - mean) / std) into `f32`, channels first.
//!
//! Measured against the committed transformers 4.57.6 / Pillow 13 reference outputs
//! (`data/fixtures/image_processor`, `tests/processor.rs`) and a Pillow-decoded corpus of
//! JPEG / PNG layouts (`tests/image_data`, `tests/decode_variants.rs`): decoded pixels,
//! resized pixels and the final `f32` values are identical to transformers' (max |diff| 0).
//! That needs two pieces written to match the C code Pillow runs: the resampler (Pillow's
//! `Resample.c`, including Pillow 13's choice of pass order) and a JPEG decoder reproducing
//! libjpeg-turbo (islow IDCT, fancy upsampling, its YCbCr tables). JPEG layouts that decoder does
//! not cover (CMYK, arithmetic coding, 12-bit, lossless) fall back to the `image` crate's
//! zune-jpeg, within a few levels of Pillow (CMYK measured: max 1/255).
//!
//! Batches are processed in parallel on rayon's thread pool ([`ImageProcessor::process_batch`]).
//!
//! Depends only on `vlm-hf`, for the `preprocessor_config.json` it follows
//! ([`vlm_hf::PreprocessorConfig`]); the data loader (`vlm-data`) and the programs use it.

mod decode;
mod error;
mod jpeg;
mod processor;
mod resample;
mod simd;

pub use decode::{decode_image_bytes, decode_image_path, DecodeLimits};
pub use error::ImageError;
pub use processor::{ImageProcessor, PixelValues};
pub use resample::resize;

/// An 8-bit RGB image, rows top to bottom, pixels interleaved (`[height, width, 3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl RgbImage {
    /// Wraps interleaved RGB bytes; `None` unless `data.len() == width * height * 3`.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        let expected = (width as usize)
            .checked_mul(height as usize)?
            .checked_mul(3)?;
        (data.len() == expected).then_some(Self {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels as `[height, width, 3]` bytes.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The `[r, g, b]` pixel at column `x`, row `y`, if inside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Applies an EXIF orientation, as `PIL.ImageOps.exif_transpose` does (e.g. orientation 6
    /// rotates 90 degrees clockwise).
    pub(crate) fn oriented(self, orientation: ::image::metadata::Orientation) -> Self {
        use ::image::metadata::Orientation as O;
        let (w, h) = (self.width as usize, self.height as usize);
        // Where output pixel (x, y) of the transformed image comes from in the source.
        type Source<'a> = &'a dyn Fn(usize, usize) -> (usize, usize);
        let (out_w, out_h, src): (usize, usize, Source) = match orientation {
            O::NoTransforms => return self,
            O::FlipHorizontal => (w, h, &|x, y| (w - 1 - x, y)),
            O::Rotate180 => (w, h, &|x, y| (w - 1 - x, h - 1 - y)),
            O::FlipVertical => (w, h, &|x, y| (x, h - 1 - y)),
            // EXIF 5, PIL TRANSPOSE: mirror over the main diagonal.
            O::Rotate90FlipH => (h, w, &|x, y| (y, x)),
            // EXIF 6, PIL ROTATE_270: 90 degrees clockwise.
            O::Rotate90 => (h, w, &|x, y| (y, h - 1 - x)),
            // EXIF 7, PIL TRANSVERSE: mirror over the anti-diagonal.
            O::Rotate270FlipH => (h, w, &|x, y| (w - 1 - y, h - 1 - x)),
            // EXIF 8, PIL ROTATE_90: 90 degrees counter-clockwise.
            O::Rotate270 => (h, w, &|x, y| (w - 1 - y, x)),
        };
        let mut data = vec![0u8; self.data.len()];
        for y in 0..out_h {
            for x in 0..out_w {
                let (sx, sy) = src(x, y);
                let s = (sy * w + sx) * 3;
                data[(y * out_w + x) * 3..][..3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        Self {
            width: out_w as u32,
            height: out_h as u32,
            data,
        }
    }
}

/// transformers' `center_crop` to `height` x `width`: the crop starts at
/// `((H - height) / 2, (W - width) / 2)` (floor); when the image is smaller than the crop it is
/// first padded with zeros, centred (`ceil` of half the missing rows/columns before it).
pub fn center_crop(img: &RgbImage, height: u32, width: u32) -> RgbImage {
    let (ih, iw) = (i64::from(img.height), i64::from(img.width));
    let (ch, cw) = (i64::from(height), i64::from(width));
    // Offsets of the crop window in the (possibly padded) canvas, and of the image in it.
    let top = (ih - ch).div_euclid(2);
    let left = (iw - cw).div_euclid(2);
    let (pad_top, pad_left) = if top >= 0 && left >= 0 && top + ch <= ih && left + cw <= iw {
        (0, 0)
    } else {
        let new_h = ch.max(ih);
        let new_w = cw.max(iw);
        ((new_h - ih + 1) / 2, (new_w - iw + 1) / 2)
    };
    let (top, left) = (top + pad_top, left + pad_left);
    // transformers slices new_image[max(0, top):min(new_h, bottom), ...], which for these
    // offsets always yields exactly height x width.
    let mut data = vec![0u8; (ch * cw * 3) as usize];
    for y in 0..ch {
        let sy = top + y - pad_top;
        if sy < 0 || sy >= ih {
            continue;
        }
        for x in 0..cw {
            let sx = left + x - pad_left;
            if sx < 0 || sx >= iw {
                continue;
            }
            let s = ((sy * iw + sx) * 3) as usize;
            data[((y * cw + x) * 3) as usize..][..3].copy_from_slice(&img.data[s..s + 3]);
        }
    }
    RgbImage {
        width,
        height,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::image::metadata::Orientation;

    fn numbered(w: u32, h: u32) -> RgbImage {
        let data = (0..w * h).flat_map(|i| [i as u8, 0, 0]).collect();
        RgbImage::from_raw(w, h, data).unwrap()
    }

    fn reds(img: &RgbImage) -> Vec<u8> {
        img.as_raw().chunks(3).map(|p| p[0]).collect()
    }

    #[test]
    fn orientations_match_pil_transposes() {
        // 3 wide, 2 high:   0 1 2
        //                   3 4 5
        let img = numbered(3, 2);
        let cases = [
            (Orientation::FlipHorizontal, (3, 2), vec![2, 1, 0, 5, 4, 3]),
            (Orientation::Rotate180, (3, 2), vec![5, 4, 3, 2, 1, 0]),
            (Orientation::FlipVertical, (3, 2), vec![3, 4, 5, 0, 1, 2]),
            (Orientation::Rotate90FlipH, (2, 3), vec![0, 3, 1, 4, 2, 5]),
            (Orientation::Rotate90, (2, 3), vec![3, 0, 4, 1, 5, 2]),
            (Orientation::Rotate270FlipH, (2, 3), vec![5, 2, 4, 1, 3, 0]),
            (Orientation::Rotate270, (2, 3), vec![2, 5, 1, 4, 0, 3]),
        ];
        for (o, (w, h), expected) in cases {
            let out = img.clone().oriented(o);
            assert_eq!((out.width(), out.height()), (w, h), "{o:?}");
            assert_eq!(reds(&out), expected, "{o:?}");
        }
    }

    #[test]
    fn center_crop_pads_like_transformers() {
        // 3x3 -> 5x4 (h x w): pad_top = ceil(2/2) = 1, pad_left = ceil(1/2) = 1.
        let img = numbered(3, 3);
        let out = center_crop(&img, 5, 4);
        #[rustfmt::skip]
        let expected = vec![
            0, 0, 0, 0,
            0, 0, 1, 2,
            0, 3, 4, 5,
            0, 6, 7, 8,
            0, 0, 0, 0,
        ];
        assert_eq!(reds(&out), expected);
        // Plain crop: 3x3 -> 2x2 starts at (0, 0) (floor of 1/2).
        assert_eq!(reds(&center_crop(&img, 2, 2)), vec![0, 1, 3, 4]);
    }
}
