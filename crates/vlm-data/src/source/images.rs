//! Checking the image files that samples name: that they exist, and optionally that they
//! decode (in parallel batches, each file once).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use vlm_image::{decode_image_path, DecodeLimits};

use super::{Skip, SkipReason};

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
