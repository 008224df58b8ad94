use std::path::PathBuf;

use crate::DecodeLimits;

/// Why an image could not be loaded. Every variant names the file (or, for in-memory bytes,
/// the name the caller gave them).
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be opened or read (missing file, permissions, ...).
    #[error("cannot read image file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file has no bytes at all.
    #[error("image file {} is empty (0 bytes)", path.display())]
    Empty { path: PathBuf },
    /// The bytes start with no known image signature.
    #[error(
        "{} is not an image: its first bytes match no known image format (expected JPEG or PNG)",
        path.display()
    )]
    NotAnImage { path: PathBuf },
    /// An image format other than JPEG and PNG.
    #[error("{} is a {format} image; only JPEG and PNG are supported", path.display())]
    UnsupportedFormat { path: PathBuf, format: String },
    /// The header announces an image bigger than [`DecodeLimits`] allow; nothing was
    /// allocated for its pixels (decompression-bomb guard).
    #[error(
        "image {} declares {width}x{height} pixels ({bytes} bytes decoded), over the decode \
         limits (at most {}x{} pixels and {} bytes): refused before decoding (decompression-bomb \
         guard; raise DecodeLimits if the image is genuine)",
        path.display(), limits.max_width, limits.max_height, limits.max_alloc
    )]
    TooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        /// Bytes the decoded image would take in its stored pixel format.
        bytes: u64,
        limits: DecodeLimits,
    },
    /// The image data ends early (a JPEG without its end-of-image marker, a PNG cut inside
    /// its pixel data). Pillow refuses such files too ("image file is truncated").
    #[error("{format} image {} is truncated: {detail}", path.display())]
    Truncated {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    /// The decoder rejected the data (corrupt header, bad compressed stream, ...).
    #[error("cannot decode {format} image {}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        format: &'static str,
        #[source]
        source: ::image::ImageError,
    },
}

impl ImageError {
    /// The file (or caller-given name) the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            Self::Io { path, .. }
            | Self::Empty { path }
            | Self::NotAnImage { path }
            | Self::UnsupportedFormat { path, .. }
            | Self::TooLarge { path, .. }
            | Self::Truncated { path, .. }
            | Self::Corrupt { path, .. } => path,
        }
    }
}
