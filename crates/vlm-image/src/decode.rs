//! Decoding JPEG / PNG files into 8-bit RGB the way transformers' `load_image` does:
//! `PIL.Image.open` -> `ImageOps.exif_transpose` -> `convert("RGB")`.

use std::io::Cursor;
use std::path::Path;

use ::image::codecs::jpeg::JpegDecoder;
use ::image::codecs::png::PngDecoder;
use ::image::metadata::Orientation;
use ::image::{DynamicImage, ImageDecoder, ImageFormat};

use crate::jpeg::{self, JpegError};
use crate::{ImageError, RgbImage};

/// Upper bounds checked against an image's header before any pixel memory is allocated, so a
/// tiny file claiming a huge image (a decompression bomb) is refused instead of exhausting RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width in pixels.
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted size of the decoded image in bytes (in its stored pixel format, e.g.
    /// 3 bytes per pixel for 8-bit RGB, 8 for 16-bit RGBA); also passed to the decoders as
    /// their allocation budget. Decoding transiently needs a small multiple of this (the JPEG
    /// decoder keeps DCT coefficients, 2 bytes per sample, next to the output; each thread
    /// keeps up to 32 MiB of them for its next image).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// 16384 x 16384 pixels and 512 MiB (the `image` crate's default allocation budget); Pillow
    /// itself refuses images over ~179 megapixels.
    fn default() -> Self {
        Self {
            max_width: 16384,
            max_height: 16384,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

impl DecodeLimits {
    fn to_image_limits(self) -> ::image::Limits {
        let mut limits = ::image::Limits::default();
        limits.max_image_width = Some(self.max_width);
        limits.max_image_height = Some(self.max_height);
        limits.max_alloc = Some(self.max_alloc);
        limits
    }

    fn admits(&self, width: u32, height: u32, bytes: u64) -> bool {
        width <= self.max_width && height <= self.max_height && bytes <= self.max_alloc
    }
}

/// Reads and decodes an image file (see [`decode_image_bytes`]) of at most
/// [`MAX_IMAGE_FILE_BYTES`](vlm_hf::MAX_IMAGE_FILE_BYTES).
pub fn decode_image_path(
    path: impl AsRef<Path>,
    limits: &DecodeLimits,
) -> Result<RgbImage, ImageError> {
    let path = path.as_ref();
    let bytes = vlm_hf::read_bounded(path, vlm_hf::MAX_IMAGE_FILE_BYTES).map_err(|source| {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?;
    decode_image_bytes(&bytes, path, limits)
}

/// Decodes a JPEG or PNG held in memory into 8-bit RGB, as transformers' `load_image` does
/// (Pillow with libjpeg-turbo; the pixels are identical for PNG and for 8-bit Huffman JPEGs with
/// 1 or 3 components, see the [crate docs](crate)):
///
/// - the EXIF orientation (or, without one, an XMP `tiff:Orientation`) is applied, as
///   `PIL.ImageOps.exif_transpose` does;
/// - `convert("RGB")` as Pillow does it: grayscale is replicated, alpha is DROPPED (no
///   compositing), palettes are looked up, 16-bit grayscale values are CLIPPED to 0..=255 (Pillow's
///   `I;16` -> RGB conversion), 16-bit RGB(A) and gray+alpha keep the high byte (Pillow's
///   `;16B` raw modes).
///
/// `name` names the data in errors (a file path, a URL, a dataset key).
pub fn decode_image_bytes(
    bytes: &[u8],
    name: impl AsRef<Path>,
    limits: &DecodeLimits,
) -> Result<RgbImage, ImageError> {
    let path = name.as_ref();
    if bytes.is_empty() {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    match ::image::guess_format(bytes) {
        Ok(ImageFormat::Png) => decode_png(bytes, path, limits),
        Ok(ImageFormat::Jpeg) => decode_jpeg(bytes, path, limits),
        Ok(other) => Err(ImageError::UnsupportedFormat {
            path: path.to_path_buf(),
            format: other.to_mime_type().to_string(),
        }),
        Err(_) => Err(ImageError::NotAnImage {
            path: path.to_path_buf(),
        }),
    }
}

/// The fields of a PNG's IHDR chunk we need before decoding.
struct PngHeader {
    width: u32,
    height: u32,
    bit_depth: u8,
    color_type: u8,
}

fn png_header(bytes: &[u8]) -> Option<PngHeader> {
    // signature (8) + length (4) + "IHDR" (4) + width, height, bit depth, colour type.
    let ihdr = bytes.get(8..26)?;
    if &ihdr[4..8] != b"IHDR" {
        return None;
    }
    Some(PngHeader {
        width: u32::from_be_bytes(ihdr[8..12].try_into().ok()?),
        height: u32::from_be_bytes(ihdr[12..16].try_into().ok()?),
        bit_depth: ihdr[16],
        color_type: ihdr[17],
    })
}

/// The 12-byte IEND chunk that ends every PNG.
const PNG_IEND: [u8; 12] = [0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];

fn decode_png(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    match decode_png_data(bytes, path, limits) {
        // Pillow stops reading after the image data and accepts a file whose IEND chunk (or
        // whatever followed the last IDAT) is missing; the png crate wants IEND. Retry with one
        // appended: if the pixel data itself is incomplete the retry fails too, and the file
        // is reported as truncated.
        Err(e @ ImageError::Truncated { .. }) if !bytes.ends_with(&PNG_IEND) => {
            let mut completed = Vec::with_capacity(bytes.len() + PNG_IEND.len());
            completed.extend_from_slice(bytes);
            completed.extend_from_slice(&PNG_IEND);
            decode_png_data(&completed, path, limits).map_err(|_| e)
        }
        other => other,
    }
}

fn decode_png_data(
    bytes: &[u8],
    path: &Path,
    limits: &DecodeLimits,
) -> Result<RgbImage, ImageError> {
    let header = png_header(bytes);
    let too_large = |header: &Option<PngHeader>| {
        let (width, height, bit_depth, color_type) = header.as_ref().map_or((0, 0, 8, 2), |h| {
            (h.width, h.height, h.bit_depth, h.color_type)
        });
        let samples: u64 = match color_type {
            0 => 1,
            4 => 2,
            6 => 4,
            _ => 3, // RGB, and palettes expand to RGB
        };
        let bytes_per_sample = if bit_depth == 16 { 2 } else { 1 };
        ImageError::TooLarge {
            path: path.to_path_buf(),
            width,
            height,
            bytes: u64::from(width) * u64::from(height) * samples * bytes_per_sample,
            limits: *limits,
        }
    };
    // The `image` crate checks the width/height limits right after reading IHDR, before the
    // png crate sets anything up for the pixel data.
    let decoder = match PngDecoder::with_limits(Cursor::new(bytes), limits.to_image_limits()) {
        Ok(decoder) => decoder,
        Err(::image::ImageError::Limits(_)) => return Err(too_large(&header)),
        Err(e) => return Err(decode_error(path, "PNG", e)),
    };
    // Grayscale with a tRNS chunk comes out of the decoder with an alpha channel; Pillow opens
    // it as plain grayscale (16-bit: `I;16`, which it clips, not shifts, when converting).
    let gray16 = header
        .as_ref()
        .is_some_and(|h| h.color_type == 0 && h.bit_depth == 16);
    finish(decoder, path, "PNG", limits, gray16)
}

fn decode_jpeg(bytes: &[u8], path: &Path, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    // zune-jpeg (behind `image`) fills a truncated scan with grey and succeeds; Pillow raises
    // "image file is truncated". Walk the marker structure first so truncation is an error.
    if let Err(detail) = jpeg_check_complete(bytes) {
        return Err(ImageError::Truncated {
            path: path.to_path_buf(),
            format: "JPEG",
            detail,
        });
    }
    // libjpeg-turbo-exact decoder for the common cases.
    let admit = |w: u32, h: u32, b: u64| limits.admits(w, h, b);
    match jpeg::decode(bytes, &admit) {
        Ok(d) => {
            let data = if d.channels == 1 {
                d.data.iter().flat_map(|&v| [v, v, v]).collect()
            } else {
                d.data
            };
            let rgb = RgbImage {
                width: d.width,
                height: d.height,
                data,
            };
            return Ok(rgb.oriented(d.orientation.unwrap_or(Orientation::NoTransforms)));
        }
        Err(JpegError::TooLarge(width, height, bytes)) => {
            return Err(ImageError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                bytes,
                limits: *limits,
            })
        }
        // Rare layouts (CMYK, arithmetic coding, 12-bit, ...) or damaged entropy data: the
        // general-purpose decoder (zune-jpeg), close to but not bit-exact with libjpeg-turbo.
        Err(JpegError::Unsupported(_) | JpegError::Corrupt(_)) => {}
    }
    // Parses the headers only (SOF gives the size); no pixel buffer yet.
    let decoder =
        JpegDecoder::new(Cursor::new(bytes)).map_err(|e| decode_error(path, "JPEG", e))?;
    finish(decoder, path, "JPEG", limits, false)
}

/// Checks the limits, reads the orientation, decodes, converts to RGB and transposes.
fn finish<D: ImageDecoder>(
    mut decoder: D,
    path: &Path,
    format: &'static str,
    limits: &DecodeLimits,
    gray16: bool,
) -> Result<RgbImage, ImageError> {
    let (width, height) = decoder.dimensions();
    let bytes = decoder.total_bytes();
    let too_large = || ImageError::TooLarge {
        path: path.to_path_buf(),
        width,
        height,
        bytes,
        limits: *limits,
    };
    if !limits.admits(width, height, bytes) {
        return Err(too_large());
    }
    decoder
        .set_limits(limits.to_image_limits())
        .map_err(|e| match e {
            ::image::ImageError::Limits(_) => too_large(),
            e => decode_error(path, format, e),
        })?;
    let orientation = read_orientation(&mut decoder);
    let image = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        ::image::ImageError::Limits(_) => too_large(),
        e => decode_error(path, format, e),
    })?;
    let rgb = to_rgb(image, gray16);
    Ok(rgb.oriented(orientation))
}

fn decode_error(path: &Path, format: &'static str, source: ::image::ImageError) -> ImageError {
    if is_eof(&source) {
        return ImageError::Truncated {
            path: path.to_path_buf(),
            format,
            detail: source.to_string(),
        };
    }
    ImageError::Corrupt {
        path: path.to_path_buf(),
        format,
        source,
    }
}

/// Whether a decoder error comes from the data ending early.
fn is_eof(e: &::image::ImageError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        cause = c.source();
    }
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unexpected eof") || text.contains("unexpected end")
}

/// Walks a JPEG's marker segments and entropy-coded data up to the EOI marker; an `Err` says
/// where the data ran out. Bytes after EOI are ignored, as Pillow ignores them.
fn jpeg_check_complete(b: &[u8]) -> Result<(), String> {
    let n = b.len();
    let mut i = 2; // after SOI (guess_format checked FF D8 FF)
    loop {
        // Find the next marker: 0xFF (possibly several fill bytes) then a non-0xFF byte.
        if i >= n {
            return Err(format!(
                "the data ends after {n} bytes without an end-of-image marker"
            ));
        }
        if b[i] != 0xFF {
            return Err(format!(
                "expected a marker at byte {i}, found 0x{:02X}",
                b[i]
            ));
        }
        while i < n && b[i] == 0xFF {
            i += 1;
        }
        if i >= n {
            return Err(format!(
                "the data ends after {n} bytes without an end-of-image marker"
            ));
        }
        let marker = b[i];
        i += 1;
        match marker {
            0xD9 => return Ok(()),                 // EOI
            0x01 | 0xD0..=0xD7 | 0xD8 => continue, // TEM, RSTn, SOI: no payload
            _ => {}
        }
        let len = match b.get(i..i + 2) {
            Some(l) => usize::from(u16::from_be_bytes([l[0], l[1]])),
            None => {
                return Err(format!(
                    "the data ends inside the 0xFF{marker:02X} segment header at byte {i}"
                ))
            }
        };
        if len < 2 || i + len > n {
            return Err(format!(
                "the 0xFF{marker:02X} segment at byte {} needs {len} bytes, {} are left",
                i - 2,
                n - i
            ));
        }
        i += len;
        if marker == 0xDA {
            // SOS: entropy-coded data up to the next marker other than a stuffed 0xFF00 or
            // RSTn.
            loop {
                match b[i..].iter().position(|&x| x == 0xFF) {
                    None => {
                        return Err(format!(
                            "the data ends inside the compressed scan ({n} bytes, no \
                             end-of-image marker)"
                        ))
                    }
                    Some(p) => i += p,
                }
                match b.get(i + 1) {
                    None => {
                        return Err(format!(
                            "the data ends inside the compressed scan ({n} bytes, no \
                             end-of-image marker)"
                        ))
                    }
                    Some(0x00) | Some(0xD0..=0xD7) | Some(0xFF) => i += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// EXIF orientation, or without one an XMP `tiff:Orientation`, as Pillow's `getexif` finds it.
/// Unreadable metadata counts as no orientation.
fn read_orientation<D: ImageDecoder>(decoder: &mut D) -> Orientation {
    if let Ok(Some(exif)) = decoder.exif_metadata() {
        if let Some(o) = Orientation::from_exif_chunk(&exif) {
            return o;
        }
    }
    if let Ok(Some(xmp)) = decoder.xmp_metadata() {
        if let Some(o) = jpeg::xmp_orientation(&xmp) {
            return o;
        }
    }
    Orientation::NoTransforms
}

/// Pillow's `convert("RGB")` of what Pillow would have opened.
fn to_rgb(image: DynamicImage, gray16: bool) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let data: Vec<u8> = match image {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageRgba8(b) => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        DynamicImage::ImageLuma8(b) => b.as_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(b) => b
            .as_raw()
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        // Pillow opens 16-bit grayscale as `I;16` and clips it to 0..=255 in convert("RGB").
        DynamicImage::ImageLuma16(b) => b.as_raw().iter().flat_map(|&v| [clip16(v); 3]).collect(),
        DynamicImage::ImageLumaA16(b) if gray16 => b
            .as_raw()
            .chunks_exact(2)
            .flat_map(|p| [clip16(p[0]); 3])
            .collect(),
        // 16-bit gray+alpha opens as RGBA via `LA;16B`: the high byte.
        DynamicImage::ImageLumaA16(b) => b
            .as_raw()
            .chunks_exact(2)
            .flat_map(|p| [high(p[0]); 3])
            .collect(),
        // 16-bit RGB(A) opens as 8-bit RGB(A) via `RGB;16B` / `RGBA;16B`: the high byte.
        DynamicImage::ImageRgb16(b) => b.as_raw().iter().map(|&v| high(v)).collect(),
        DynamicImage::ImageRgba16(b) => b
            .as_raw()
            .chunks_exact(4)
            .flat_map(|p| [high(p[0]), high(p[1]), high(p[2])])
            .collect(),
        // JPEG and PNG never produce other layouts; convert generically just in case.
        other => other.to_rgb8().into_raw(),
    };
    RgbImage {
        width,
        height,
        data,
    }
}

fn clip16(v: u16) -> u8 {
    v.min(255) as u8
}

fn high(v: u16) -> u8 {
    (v >> 8) as u8
}
