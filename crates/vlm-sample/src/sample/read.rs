//! The dataset read back for training and evaluation: its LLaVA files through `vlm-data`'s
//! LLaVA source, each conversation with its image's preprocessed pixels, and extra training
//! scenes drawn by the same generator under another seed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vlm_data::source::{read_source, ReadOptions, SourceError, SourceKind, SourceSpec};
use vlm_data::Conversation;
use vlm_image::{ImageError, ImageProcessor};

use super::{scenes, write_sample_data, SampleConfig, SampleError, Scene, Split};

/// An image's preprocessed values, `[3, height, width]` (shared by the samples that show it).
pub type Pixels = Arc<[f32]>;

/// Why reading the dataset back failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The LLaVA file could not be read, or a record is invalid.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A record has no image.
    #[error("sample record {id} has no image")]
    NoImage {
        /// The record's id.
        id: String,
    },
    /// An image could not be decoded or processed.
    #[error("sample image {}: {source}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// Why (boxed: the decoder's error is large).
        #[source]
        source: Box<ImageError>,
    },
    /// The extra scenes could not be written.
    #[error(transparent)]
    Generate(#[from] SampleError),
}

/// `llava_{split}.json` of a dataset folder, read by `vlm-data`'s LLaVA source (every record
/// kept, or an error), with the pixels of each conversation's image.
pub fn read_split(
    dir: &Path,
    split: Split,
    images: &ImageProcessor,
) -> Result<Vec<(Conversation, Pixels)>, ReadError> {
    let spec = SourceSpec {
        name: split.name().into(),
        kind: SourceKind::Llava,
        annotations: dir.join(format!("llava_{}.json", split.name())),
        images: dir.join("images"),
        captions: Default::default(),
        seed: 0,
    };
    let strict = ReadOptions {
        strict: true,
        ..ReadOptions::default()
    };
    let mut conversations = Vec::new();
    read_source(&spec, &strict, &mut conversations)?;
    conversations
        .into_iter()
        .map(|conv| {
            let image = conv.image.as_ref().ok_or_else(|| ReadError::NoImage {
                id: conv.id.clone(),
            })?;
            let pixels = images
                .process_path(image)
                .map_err(|source| ReadError::Image {
                    path: image.clone(),
                    source: Box::new(source),
                })?;
            Ok((conv, Pixels::from(pixels.data)))
        })
        .collect()
}

/// A training scene drawn by the generator: its conversation and pixels, and the scene.
pub struct GeneratedScene {
    /// The conversation about the scene, with its image's pixels.
    pub example: (Conversation, Pixels),
    /// What the image shows.
    pub scene: Scene,
}

/// `count` training scenes from the generator with seed 1 (the default instance's size),
/// written to `dir`, minus any whose shapes (kinds, colours, positions) equal a held-out
/// scene's of the default instance, so that the held-out layouts stay unseen.
pub fn extra_scenes(
    count: usize,
    dir: &Path,
    images: &ImageProcessor,
) -> Result<Vec<GeneratedScene>, ReadError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let config = SampleConfig {
        seed: 1,
        train: count,
        heldout: 0,
        size: SampleConfig::default().size,
    };
    let heldout: HashSet<_> = scenes(&SampleConfig::default(), Split::Heldout)
        .into_iter()
        .map(|s| s.shapes)
        .collect();
    write_sample_data(dir, &config)?;
    let drawn = scenes(&config, Split::Train);
    Ok(read_split(dir, Split::Train, images)?
        .into_iter()
        .zip(drawn)
        .filter(|(_, scene)| !heldout.contains(&scene.shapes))
        .map(|(example, scene)| GeneratedScene { example, scene })
        .collect())
}
