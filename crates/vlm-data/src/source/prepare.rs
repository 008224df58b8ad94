//! Preparing one manifest from several sources, as the `prepare_data` example does: a config
//! file (TOML or JSON) lists the sources, [`prepare`] reads them in order into one JSONL
//! manifest and returns the counts of each.
//!
//! ```toml
//! output = "train.jsonl"        # relative paths are relative to the config file's folder
//! image_paths = "relative"      # "absolute" (default) or "relative" to the manifest's folder
//! image_check = "exists"        # "none", "exists" (default) or "decode"
//! strict = false                # true: stop at the first record that would be skipped
//! images_outside_root = false   # true: accept image names leaving a source's image folder
//!
//! [[source]]
//! name = "llava-detail"         # optional: defaults to the annotation file's stem
//! kind = "llava"                # or "ai_challenger"
//! annotations = "llava/detail_23k.json"
//! images = "coco/train2017"
//!
//! [[source]]
//! kind = "ai_challenger"
//! annotations = "aic/caption_train_annotations_20170902.json"
//! images = "aic/caption_train_images_20170902"
//! captions = "one_random"       # "each" (default), "one_random" or "first"
//! seed = 42
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{
    read_source, ImageCheck, ImagePaths, ManifestWriter, Progress, ReadOptions, Sink, SourceError,
    SourceSpec, SourceStats,
};
use crate::conversation::Conversation;

/// How a prepared manifest names its images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathStyle {
    /// Absolute paths.
    #[default]
    Absolute,
    /// Paths relative to the manifest's own folder (pass that folder as the image root when
    /// loading it), so the manifest and its images can move together.
    Relative,
}

/// Everything [`prepare`] needs; deserializes from a config file (unknown keys are refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareConfig {
    /// The manifest to write (JSONL, one conversation per line).
    pub output: PathBuf,
    /// How the manifest names images.
    #[serde(default)]
    pub image_paths: PathStyle,
    /// What to check of each image before writing a sample that names it.
    #[serde(default)]
    pub image_check: ImageCheck,
    /// Stop at the first record that would be skipped, with an error naming it.
    #[serde(default)]
    pub strict: bool,
    /// Accept image names that leave their source's image folder (absolute paths, `..`,
    /// symlinks pointing outside); by default those records are skipped.
    #[serde(default)]
    pub images_outside_root: bool,
    /// The sources, read in this order (`[[source]]` tables in TOML, `"source"` or `"sources"`
    /// in JSON).
    #[serde(default, rename = "source", alias = "sources")]
    pub sources: Vec<SourceSpec>,
}

/// Why preparing failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The config file could not be read or parsed.
    #[error("config file {}: {detail}", path.display())]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong (the parser's message, with the line).
        detail: String,
    },
    /// A `--source` style inline spec could not be parsed.
    #[error("source spec {text:?}: {detail}")]
    InlineSource {
        /// The spec as given.
        text: String,
        /// What is wrong.
        detail: String,
    },
    /// The manifest to write is one of the inputs (the same file, symlinks resolved).
    #[error("output {} is the input {}: writing it would destroy it; choose another output", output.display(), input.display())]
    OutputIsInput {
        /// The manifest as given.
        output: PathBuf,
        /// The input it resolves to.
        input: PathBuf,
    },
    /// No source to read.
    #[error("no sources: list some in the config file ([[source]]) or on the command line")]
    NoSources,
    /// Reading a source failed (names the annotation file and record).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The manifest could not be written.
    #[error("cannot write manifest {}: {source}", path.display())]
    Output {
        /// The manifest (or its temporary `.part` file).
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl PrepareConfig {
    /// Reads a config file: JSON when its name ends in `.json`, TOML otherwise. Relative paths
    /// in it are taken relative to the file's folder; sources without a name get their
    /// annotation file's stem.
    pub fn from_file(path: &Path) -> Result<Self, PrepareError> {
        let config_error = |detail: String| PrepareError::Config {
            path: path.to_path_buf(),
            detail,
        };
        let text = vlm_hf::read_bounded_string(path, vlm_hf::MAX_CONFIG_BYTES)
            .map_err(|e| config_error(e.to_string()))?;
        let config: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| config_error(e.to_string()))?
        } else {
            toml::from_str(&text).map_err(|e| config_error(e.to_string()))?
        };
        let base = path.parent().unwrap_or(Path::new(""));
        Ok(Self {
            output: base.join(&config.output),
            sources: config
                .sources
                .into_iter()
                .map(|s| s.relative_to(base).named())
                .collect(),
            ..config
        })
    }
}

impl SourceSpec {
    /// The spec with an empty name replaced by the annotation file's stem.
    fn named(mut self) -> Self {
        if self.name.is_empty() {
            self.name = self
                .annotations
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
        }
        self
    }
}

impl FromStr for SourceSpec {
    type Err = PrepareError;

    /// Parses the command-line form `key=value,key=value`, with the keys of a config file's
    /// `[[source]]` table, e.g.
    /// `kind=ai_challenger,annotations=a.json,images=imgs,captions=one_random,seed=3`.
    fn from_str(text: &str) -> Result<Self, PrepareError> {
        let error = |detail: String| PrepareError::InlineSource {
            text: text.to_owned(),
            detail,
        };
        let mut table = serde_json::Map::new();
        for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| error(format!("{pair:?} is not key=value")))?;
            let (key, value) = (key.trim(), value.trim());
            let value = match key {
                "seed" => value
                    .parse::<u64>()
                    .map(serde_json::Value::from)
                    .map_err(|e| error(format!("seed {value:?}: {e}")))?,
                _ => serde_json::Value::from(value),
            };
            table.insert(key.to_owned(), value);
        }
        let spec: Self = serde_json::from_value(serde_json::Value::Object(table))
            .map_err(|e| error(e.to_string()))?;
        Ok(spec.named())
    }
}

/// The counts of one source of a [`prepare`] run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReport {
    /// The source's name.
    pub name: String,
    /// What reading it did.
    pub stats: SourceStats,
}

/// Reads every source of `config`, in order, into its manifest, calling `progress` with the
/// source's index in `config.sources` after each record. The manifest is written to `<output>.part` and renamed when complete, so a failed
/// run leaves no partial manifest behind.
pub fn prepare(
    config: &PrepareConfig,
    progress: &mut dyn FnMut(usize, Progress),
) -> Result<Vec<SourceReport>, PrepareError> {
    if config.sources.is_empty() {
        return Err(PrepareError::NoSources);
    }
    let part = part_path(&config.output);
    let annotations = config.sources.iter().map(|s| s.annotations.as_path());
    refuse_input_as_output(&config.output, annotations.clone())?;
    refuse_input_as_output(&part, annotations)?;
    let result = write_manifest(config, &part, progress);
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover .part file.
        let _ = std::fs::remove_file(&part);
    }
    let reports = result?;
    std::fs::rename(&part, &config.output).map_err(|source| PrepareError::Output {
        path: config.output.clone(),
        source,
    })?;
    Ok(reports)
}

/// Refuses an `output` that is one of `inputs`: the same file once both are canonicalised
/// (so a symlink to an input, or another spelling of its path, is caught). An output that does
/// not exist yet is no input.
pub fn refuse_input_as_output<'a>(
    output: &Path,
    inputs: impl IntoIterator<Item = &'a Path>,
) -> Result<(), PrepareError> {
    let Ok(resolved) = output.canonicalize() else {
        return Ok(());
    };
    for input in inputs {
        if input.canonicalize().is_ok_and(|i| i == resolved) {
            return Err(PrepareError::OutputIsInput {
                output: output.to_path_buf(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

fn part_path(output: &Path) -> PathBuf {
    let mut name = output.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    output.with_file_name(name)
}

fn write_manifest(
    config: &PrepareConfig,
    part: &Path,
    progress: &mut dyn FnMut(usize, Progress),
) -> Result<Vec<SourceReport>, PrepareError> {
    let output_error = |source| PrepareError::Output {
        path: part.to_path_buf(),
        source,
    };
    let folder = config.output.parent().unwrap_or(Path::new(""));
    if !folder.as_os_str().is_empty() {
        std::fs::create_dir_all(folder).map_err(output_error)?;
    }
    let paths = match config.image_paths {
        PathStyle::Absolute => ImagePaths::Absolute,
        PathStyle::Relative => ImagePaths::RelativeTo(folder.to_path_buf()),
    };
    let file = File::create(part).map_err(output_error)?;
    let mut writer = ManifestWriter::new(BufWriter::new(file), paths).map_err(output_error)?;
    let options = ReadOptions {
        strict: config.strict,
        images: config.image_check,
        images_outside_root: config.images_outside_root,
        ..ReadOptions::default()
    };
    let mut reports = Vec::with_capacity(config.sources.len());
    for (index, spec) in config.sources.iter().enumerate() {
        let mut sink = Observed {
            writer: &mut writer,
            index,
            progress: &mut *progress,
        };
        let stats = read_source(spec, &options, &mut sink)?;
        reports.push(SourceReport {
            name: spec.name.clone(),
            stats,
        });
    }
    let mut file = writer.into_inner();
    file.flush().map_err(output_error)?;
    file.get_ref().sync_all().map_err(output_error)?;
    Ok(reports)
}

/// A manifest writer that also reports progress.
struct Observed<'a, W: Write> {
    writer: &'a mut ManifestWriter<W>,
    index: usize,
    progress: &'a mut dyn FnMut(usize, Progress),
}

impl<W: Write> Sink for Observed<'_, W> {
    fn accept(&mut self, sample: Conversation) -> std::io::Result<()> {
        self.writer.accept(sample)
    }

    fn progress(&mut self, progress: Progress) {
        (self.progress)(self.index, progress);
    }
}
