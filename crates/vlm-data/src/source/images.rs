//! Checking the image files that samples name: that they stay inside the source's image
//! folder, that they exist, and optionally that they decode (in parallel batches, each file
//! once).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use vlm_image::{decode_image_path, DecodeLimits};

use super::{Skip, SkipReason, SourceError};

/// A source's image folder: where the records' image names are looked up, and the bound they
/// must stay within (unless the source allows images outside it).
pub(crate) struct ImageRoot {
    root: PathBuf,
    /// The folder with symlinks resolved, to compare resolved image paths against.
    canonical: PathBuf,
    allow_outside: bool,
}

impl ImageRoot {
    /// The folder `root`; an error when it is not an existing folder (a mistyped `images`
    /// path would otherwise give zero samples and a success).
    pub(crate) fn new(root: &Path, allow_outside: bool) -> Result<Self, SourceError> {
        let missing = |source| SourceError::ImageFolder {
            path: root.to_path_buf(),
            source,
        };
        let canonical = root.canonicalize().map_err(missing)?;
        if !canonical.is_dir() {
            return Err(missing(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                "not a folder",
            )));
        }
        Ok(Self {
            root: root.to_path_buf(),
            canonical,
            allow_outside,
        })
    }

    /// The path of the image a record names. Refused (as [`SkipReason::ImageOutsideRoot`])
    /// unless it stays inside the folder: no absolute path, no `..`, and, when the file exists,
    /// its symlinks resolved, still inside the folder.
    pub(crate) fn resolve(&self, name: &str) -> Result<PathBuf, Skip> {
        let path = self.root.join(name);
        if self.allow_outside {
            return Ok(path);
        }
        let outside = |why: &str| {
            Skip::new(
                SkipReason::ImageOutsideRoot,
                format!("image {name:?} {why} {}", self.root.display()),
            )
        };
        let plain = Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !plain {
            return Err(outside("is not a plain relative path inside"));
        }
        match path.canonicalize() {
            Ok(resolved) if !resolved.starts_with(&self.canonical) => {
                Err(outside("resolves (through a symlink) outside"))
            }
            _ => Ok(path),
        }
    }
}

/// How much [`read_source`](super::read_source) checks of each image a sample names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageCheck {
    /// Nothing: samples are written even when their image is missing.
    None,
    /// The file exists (samples whose image is missing are skipped as
    /// [`SkipReason::MissingImage`]).
    #[default]
    Exists,
    /// The file exists and decodes with [`decode_image_path`] (samples whose image does not are
    /// skipped as [`SkipReason::BadImage`]); records are then handled in batches so that images
    /// decode in parallel.
    Decode,
}

/// Records per batch when images are decoded (enough to keep every core busy).
const DECODE_BATCH: usize = 64;

/// Remembers which images were decoded and whether they were good.
pub(crate) struct ImageGate {
    check: ImageCheck,
    limits: DecodeLimits,
    /// `None` for a good image, the decoder's message for a bad one.
    decoded: HashMap<PathBuf, Option<String>>,
}

impl ImageGate {
    pub(crate) fn new(check: ImageCheck, limits: DecodeLimits) -> Self {
        Self {
            check,
            limits,
            decoded: HashMap::new(),
        }
    }

    /// How many records to hold before [`Self::decode_new`] and writing them.
    pub(crate) fn batch_size(&self) -> usize {
        match self.check {
            ImageCheck::Decode => DECODE_BATCH,
            ImageCheck::None | ImageCheck::Exists => 1,
        }
    }

    /// Skips a sample whose image file is missing (unless checks are off).
    pub(crate) fn exists(&self, image: &Path) -> Result<(), Skip> {
        if self.check == ImageCheck::None || image.is_file() {
            return Ok(());
        }
        Err(Skip::new(
            SkipReason::MissingImage,
            format!("no image file {}", image.display()),
        ))
    }

    /// Decodes, in parallel, the images among `images` not decoded before; returns the bad ones
    /// with their errors. Does nothing unless the check is [`ImageCheck::Decode`].
    pub(crate) fn decode_new<'a>(
        &mut self,
        images: impl Iterator<Item = &'a Path>,
    ) -> Vec<(PathBuf, String)> {
        if self.check != ImageCheck::Decode {
            return Vec::new();
        }
        let mut new: Vec<PathBuf> = images
            .filter(|p| !self.decoded.contains_key(*p))
            .map(Path::to_path_buf)
            .collect();
        new.sort();
        new.dedup();
        let verdicts: Vec<(PathBuf, Option<String>)> = new
            .into_par_iter()
            .map(|path| {
                let err = decode_image_path(&path, &self.limits).err();
                (path, err.map(|e| e.to_string()))
            })
            .collect();
        let bad = verdicts
            .iter()
            .filter_map(|(p, err)| err.clone().map(|e| (p.clone(), e)))
            .collect();
        self.decoded.extend(verdicts);
        bad
    }

    /// Skips a sample whose image was found bad by [`Self::decode_new`].
    pub(crate) fn decoded(&self, image: &Path) -> Result<(), Skip> {
        match self.decoded.get(image) {
            Some(Some(err)) => Err(Skip::new(SkipReason::BadImage, err.clone())),
            Some(None) | None => Ok(()),
        }
    }
}
