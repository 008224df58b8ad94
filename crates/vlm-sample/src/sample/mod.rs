//! A deterministic synthetic image-question dataset that needs the image to answer: 1-3 flat
//! shapes (circle, square, triangle) in 4 colors at 5 positions on plain or gradient
//! backgrounds, asked about in English ("What color is the circle?" "Red.") and captioned in
//! Chinese ("图中有一个红色的圆形。"), written in both source formats (LLaVA-Instruct JSON and
//! AI Challenger caption JSON) with train and held-out splits.
//!
//! The same [`SampleConfig`] gives the same bytes: the random choices come from a seeded
//! SplitMix64 written out in `vlm-rng`, the images are PNGs from the `image` crate's encoder
//! (its output is fixed for a fixed `Cargo.lock`), and the JSON is written in a fixed layout.
//! `data/sample/` in the repository holds the default instance.
//!
//! Layout written by [`write_sample_data`] (`NNNN` is the 4-digit image index):
//!
//! ```text
//! images/train_NNNN.png, images/heldout_NNNN.png
//! llava_train.json, llava_heldout.json   (one conversation per image: the count and one
//!                                          question per shape)
//! aic_train.json, aic_heldout.json       (three captions per image)
//! ```

mod read;
mod scene;
mod text;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use ::image::codecs::png::{CompressionType, FilterType, PngEncoder};
use ::image::{ExtendedColorType, ImageEncoder};
use serde::Serialize;

use vlm_data::IMAGE_PLACEHOLDER;
use vlm_rng::SplitMix64;

pub use read::{extra_scenes, read_split, GeneratedScene, Pixels, ReadError};
pub use scene::{Background, Color, Position, Scene, Shape, ShapeKind};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Images in the train split.
    pub train: usize,
    /// Images in the held-out split.
    pub heldout: usize,
    /// Width and height of the square images in pixels (16 to 1024).
    pub size: u32,
}

impl Default for SampleConfig {
    /// The instance committed under `data/sample/`: seed 0, 200 train and 50 held-out images of
    /// 224 x 224 pixels.
    fn default() -> Self {
        Self {
            seed: 0,
            train: 200,
            heldout: 50,
            size: 224,
        }
    }
}

/// The two splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// For training.
    Train,
    /// For evaluation; its scenes avoid the train scenes' shape layouts (see [`scenes`]).
    Heldout,
}

impl Split {
    /// `"train"` or `"heldout"`, as in file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Heldout => "heldout",
        }
    }

    fn stream(self) -> u64 {
        match self {
            Self::Train => 0,
            Self::Heldout => 1,
        }
    }
}

/// One generated file: its path relative to the output folder and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFile {
    /// Where it goes, relative to the output folder.
    pub path: PathBuf,
    /// Its content.
    pub bytes: Vec<u8>,
}

/// Why generating or writing the sample data failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// The image size is outside 16..=1024.
    #[error("sample image size {0} is outside 16..=1024 pixels")]
    Size(u32),
    /// The PNG encoder failed.
    #[error("cannot encode sample image {name}: {source}")]
    Encode {
        /// The image's file name.
        name: String,
        /// The encoder's error.
        #[source]
        source: ::image::ImageError,
    },
    /// Serializing an annotation file failed.
    #[error("cannot serialize {name}: {source}")]
    Json {
        /// The annotation file's name.
        name: String,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Held-out scenes redraw up to this many times to avoid a train layout.
const MAX_HELDOUT_DRAWS: usize = 1000;

/// The scenes of both splits with the random generator of each image, positioned after its
/// scene was drawn. Held-out scenes redraw (up to 1000 times) until their shapes (positions,
/// kinds and colors; the background does not count) match no train scene's.
fn draw(config: &SampleConfig) -> Vec<(Split, Scene, SplitMix64)> {
    let mut out = Vec::with_capacity(config.train + config.heldout);
    let mut seen = HashSet::new();
    for index in 0..config.train {
        let mut rng = SplitMix64::for_item(config.seed, Split::Train.stream(), index as u64);
        let scene = Scene::random(&mut rng);
        seen.insert(scene.shapes.clone());
        out.push((Split::Train, scene, rng));
    }
    for index in 0..config.heldout {
        let mut rng = SplitMix64::for_item(config.seed, Split::Heldout.stream(), index as u64);
        let mut scene = Scene::random(&mut rng);
        for _ in 1..MAX_HELDOUT_DRAWS {
            if !seen.contains(&scene.shapes) {
                break;
            }
            scene = Scene::random(&mut rng);
        }
        out.push((Split::Heldout, scene, rng));
    }
    out
}

/// The scenes of one split, in image order.
pub fn scenes(config: &SampleConfig, split: Split) -> Vec<Scene> {
    draw(config)
        .into_iter()
        .filter(|(s, ..)| *s == split)
        .map(|(_, scene, _)| scene)
        .collect()
}

#[derive(Serialize)]
struct LlavaRecord {
    id: String,
    image: String,
    conversations: Vec<LlavaMessage>,
}

#[derive(Serialize)]
struct LlavaMessage {
    from: &'static str,
    value: String,
}

#[derive(Serialize)]
struct AicRecord {
    image_id: String,
    caption: Vec<String>,
}

/// Everything of one split.
#[derive(Default)]
struct SplitFiles {
    llava: Vec<LlavaRecord>,
    aic: Vec<AicRecord>,
}

/// Generates every file of the dataset in memory, in a fixed order (images, then the four
/// annotation files).
pub fn generate(config: &SampleConfig) -> Result<Vec<SampleFile>, SampleError> {
    if !(16..=1024).contains(&config.size) {
        return Err(SampleError::Size(config.size));
    }
    let mut files = Vec::new();
    let (mut train, mut heldout) = (SplitFiles::default(), SplitFiles::default());
    let mut counters = [0usize; 2];
    for (split, scene, mut rng) in draw(config) {
        let index = &mut counters[split.stream() as usize];
        let stem = format!("{}_{:04}", split.name(), *index);
        *index += 1;
        let name = format!("{stem}.png");
        files.push(SampleFile {
            path: Path::new("images").join(&name),
            bytes: png(&scene, config.size, &name)?,
        });
        let out = match split {
            Split::Train => &mut train,
            Split::Heldout => &mut heldout,
        };
        out.llava
            .push(llava_record(&scene, stem, name.clone(), &mut rng));
        out.aic.push(AicRecord {
            image_id: name,
            caption: text::captions(&scene),
        });
    }
    for (split, out) in [(Split::Train, train), (Split::Heldout, heldout)] {
        files.push(json_file(
            format!("llava_{}.json", split.name()),
            &out.llava,
        )?);
        files.push(json_file(format!("aic_{}.json", split.name()), &out.aic)?);
    }
    Ok(files)
}

/// Generates the dataset and writes it under `dir` (creating folders, replacing files).
pub fn write_sample_data(
    dir: &Path,
    config: &SampleConfig,
) -> Result<Vec<SampleFile>, SampleError> {
    let files = generate(config)?;
    for file in &files {
        let path = dir.join(&file.path);
        let io = |source| SampleError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, &file.bytes).map_err(io)?;
    }
    Ok(files)
}

fn png(scene: &Scene, size: u32, name: &str) -> Result<Vec<u8>, SampleError> {
    let image = scene.render(size);
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, FilterType::Adaptive)
        .write_image(image.as_raw(), size, size, ExtendedColorType::Rgb8)
        .map_err(|source| SampleError::Encode {
            name: name.to_owned(),
            source,
        })?;
    Ok(bytes)
}

/// One conversation: the questions of [`text::questions`], `<image>` starting or ending the
/// first one (at random), as LLaVA-Instruct has it.
fn llava_record(scene: &Scene, id: String, image: String, rng: &mut SplitMix64) -> LlavaRecord {
    let placeholder_first = rng.coin();
    let mut conversations = Vec::new();
    for (i, (question, answer)) in text::questions(scene, rng).into_iter().enumerate() {
        let value = match (i, placeholder_first) {
            (0, true) => format!("{IMAGE_PLACEHOLDER}\n{question}"),
            (0, false) => format!("{question}\n{IMAGE_PLACEHOLDER}"),
            _ => question,
        };
        conversations.push(LlavaMessage {
            from: "human",
            value,
        });
        conversations.push(LlavaMessage {
            from: "gpt",
            value: answer,
        });
    }
    LlavaRecord {
        id,
        image,
        conversations,
    }
}

/// A JSON array with one compact record per line.
fn json_file<T: Serialize>(name: String, records: &[T]) -> Result<SampleFile, SampleError> {
    let mut bytes = b"[\n".to_vec();
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            bytes.extend_from_slice(b",\n");
        }
        serde_json::to_writer(&mut bytes, record).map_err(|source| SampleError::Json {
            name: name.clone(),
            source,
        })?;
    }
    bytes.extend_from_slice(b"\n]\n");
    Ok(SampleFile {
        path: PathBuf::from(name),
        bytes,
    })
}
