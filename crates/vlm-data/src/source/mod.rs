//! Data sources: annotation files of public datasets turned into [`Conversation`]s.
//!
//! - [`SourceKind::Llava`]: LLaVA-Instruct JSON (`detail_23k.json`, `complex_reasoning_77k.json`
//!   and the same format generally), over a folder of images;
//! - [`SourceKind::AiChallenger`]: AI Challenger caption JSON, each caption answering the fixed
//!   prompt [`AIC_PROMPT`].
//!
//! [`read_source`] streams a file's top-level array one record at a time (constant memory, see
//! `stream.rs`) and hands each sample to a [`Sink`], typically a [`ManifestWriter`] writing a
//! JSONL manifest. Every record and every turn is kept; a record that cannot be used is never a
//! panic: it is skipped and counted by [`SkipReason`] in the returned [`SourceStats`], or, with
//! [`ReadOptions::strict`], ends the read with an error naming the file and the record index.
//! [`prepare`] runs several sources from a [`PrepareConfig`] (TOML or JSON) into one manifest.
//!
//! Measured (release build, 2-core machine): a 310 MB LLaVA-format file of 150,000 records plus
//! a 4 MB AI Challenger file, 270,000 samples with every image decoded (250 distinct images),
//! took 5.2 s with a peak resident memory of 5.4 MB.

mod aic;
mod error;
mod images;
mod llava;
mod manifest;
mod prepare;
mod stats;
mod stream;
mod validate;

use std::cell::Cell;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conversation::Conversation;
use vlm_image::DecodeLimits;

pub use aic::{CaptionMode, AIC_PROMPT};
pub use error::SourceError;
pub use images::ImageCheck;
pub use manifest::{ImagePaths, ManifestWriter};
pub use prepare::{
    prepare, refuse_input_as_output, PathStyle, PrepareConfig, PrepareError, SourceReport,
};
pub use stats::{SkipReason, SourceStats, DUPLICATE_EXAMPLES};

use images::{ImageGate, ImageRoot};
use stream::StreamError;

/// The annotation formats [`read_source`] understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// LLaVA-Instruct conversations (`"llava"` in config files).
    Llava,
    /// AI Challenger captions (`"ai_challenger"` in config files).
    AiChallenger,
}

/// One source to read: what format, which annotation file, which image folder, and options.
/// Deserializes from a config file entry (unknown keys are refused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A label for counts tables (config files and `--source` default it to the annotation
    /// file's stem).
    #[serde(default)]
    pub name: String,
    /// The annotation format.
    pub kind: SourceKind,
    /// The annotation JSON file.
    pub annotations: PathBuf,
    /// The folder the records' image names are relative to.
    pub images: PathBuf,
    /// AI Challenger only: one sample per caption, or one random caption per image.
    #[serde(default)]
    pub captions: CaptionMode,
    /// Seed of the random choices (AI Challenger: placeholder position, caption choice).
    #[serde(default)]
    pub seed: u64,
}

impl SourceSpec {
    /// The spec with relative `annotations` and `images` paths taken relative to `base` (a
    /// config file's folder) instead of the working directory.
    pub fn relative_to(mut self, base: &Path) -> Self {
        self.annotations = base.join(&self.annotations);
        self.images = base.join(&self.images);
        self
    }
}

/// How strictly [`read_source`] reads.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// Stop with [`SourceError::Rejected`] at the first record that would be skipped.
    pub strict: bool,
    /// What to check of each sample's image file.
    pub images: ImageCheck,
    /// Limits for [`ImageCheck::Decode`].
    pub limits: DecodeLimits,
    /// Accept image names that leave the image folder (absolute paths, `..`, symlinks
    /// pointing outside); by default such records are skipped as
    /// [`SkipReason::ImageOutsideRoot`].
    pub images_outside_root: bool,
}

/// How far through its annotation file a read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the annotation file read so far.
    pub bytes_read: u64,
    /// The file's size in bytes.
    pub bytes_total: u64,
}

/// Where [`read_source`] puts the samples it reads.
pub trait Sink {
    /// Takes one sample.
    fn accept(&mut self, sample: Conversation) -> std::io::Result<()>;

    /// Called after each record; does nothing unless implemented (e.g. a progress bar).
    fn progress(&mut self, _progress: Progress) {}
}

impl Sink for Vec<Conversation> {
    fn accept(&mut self, sample: Conversation) -> std::io::Result<()> {
        self.push(sample);
        Ok(())
    }
}

/// Reads every record of `spec`'s annotation file into `sink`, returning the counts.
///
/// Samples whose id an earlier sample of this source had are written and counted in
/// [`SourceStats::duplicate_ids`] (this keeps every id read so far in memory).
///
/// Errors: the image folder is missing, the file cannot be read, is not a JSON array (naming the record where the JSON
/// breaks), the sink fails, or, in strict mode, a record would be skipped.
pub fn read_source(
    spec: &SourceSpec,
    options: &ReadOptions,
    sink: &mut dyn Sink,
) -> Result<SourceStats, SourceError> {
    let io_error = |source| SourceError::Io {
        path: spec.annotations.clone(),
        source,
    };
    let root = ImageRoot::new(&spec.images, options.images_outside_root)?;
    let file = File::open(&spec.annotations).map_err(io_error)?;
    let bytes_total = file.metadata().map_err(io_error)?.len();
    let bytes_read = Rc::new(Cell::new(0));
    let reader = BufReader::with_capacity(
        1 << 16,
        CountingReader {
            inner: file,
            count: Rc::clone(&bytes_read),
        },
    );
    let mut run = Run {
        spec,
        strict: options.strict,
        root,
        gate: ImageGate::new(options.images, options.limits),
        sink,
        ids: HashSet::new(),
        stats: SourceStats::default(),
        pending: Vec::new(),
        bytes_read,
        bytes_total,
    };
    match stream::for_each_element(reader, |index, value| run.record(index, value)) {
        Ok(_) => run.flush().map(|()| run.stats),
        Err(StreamError::Callback(err)) => Err(err),
        Err(StreamError::Json { record, source }) => Err(SourceError::Json {
            path: spec.annotations.clone(),
            record,
            source,
        }),
    }
}

/// Why a record, or one caption of it, is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Skip {
    reason: SkipReason,
    detail: String,
}

impl Skip {
    pub(crate) fn new(reason: SkipReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a parser made of one record.
pub(crate) enum Parsed {
    /// The whole record is skipped.
    Skip(Skip),
    /// The record gives samples (possibly with some of its captions skipped).
    Samples(Samples),
}

/// The samples of one record, all about the same image.
pub(crate) struct Samples {
    image: Option<PathBuf>,
    conversations: Vec<Conversation>,
    skipped: Vec<Skip>,
}

impl Parsed {
    fn one(c: Conversation) -> Self {
        Self::Samples(Samples {
            image: c.image.clone(),
            conversations: vec![c],
            skipped: Vec::new(),
        })
    }
}

/// A record waiting for its image to be decoded.
struct Pending {
    index: usize,
    samples: Samples,
}

/// The state of one [`read_source`] call.
struct Run<'a> {
    spec: &'a SourceSpec,
    strict: bool,
    root: ImageRoot,
    gate: ImageGate,
    sink: &'a mut dyn Sink,
    /// The ids written so far, to count repeats.
    ids: HashSet<String>,
    stats: SourceStats,
    pending: Vec<Pending>,
    bytes_read: Rc<Cell<u64>>,
    bytes_total: u64,
}

impl Run<'_> {
    fn record(&mut self, index: usize, value: Value) -> Result<(), SourceError> {
        self.stats.records += 1;
        match self.parse(index, value) {
            Parsed::Skip(skip) => self.skip(index, skip)?,
            Parsed::Samples(samples) => self.queue(index, samples)?,
        }
        self.sink.progress(Progress {
            bytes_read: self.bytes_read.get(),
            bytes_total: self.bytes_total,
        });
        Ok(())
    }

    fn parse(&self, index: usize, value: Value) -> Parsed {
        let spec = self.spec;
        match spec.kind {
            SourceKind::Llava => llava::parse(value, &self.root),
            SourceKind::AiChallenger => {
                aic::parse(value, index, &self.root, spec.captions, spec.seed)
            }
        }
    }

    fn queue(&mut self, index: usize, mut samples: Samples) -> Result<(), SourceError> {
        if let Some(image) = &samples.image {
            if let Err(skip) = self.gate.exists(image) {
                return self.skip(index, skip);
            }
        }
        for skip in std::mem::take(&mut samples.skipped) {
            self.skip(index, skip)?;
        }
        self.pending.push(Pending { index, samples });
        if self.pending.len() >= self.gate.batch_size() {
            self.flush()?;
        }
        Ok(())
    }

    /// Decodes the pending records' images (when asked to) and writes their samples.
    fn flush(&mut self) -> Result<(), SourceError> {
        let pending = std::mem::take(&mut self.pending);
        let images = pending.iter().filter_map(|p| p.samples.image.as_deref());
        let bad = self.gate.decode_new(images);
        self.stats.bad_images.extend(bad);
        for Pending { index, samples } in pending {
            let verdict = samples
                .image
                .as_deref()
                .map_or(Ok(()), |image| self.gate.decoded(image));
            match verdict {
                Ok(()) => self.write(index, samples.conversations)?,
                Err(skip) => self.skip(index, skip)?,
            }
        }
        Ok(())
    }

    fn write(&mut self, index: usize, conversations: Vec<Conversation>) -> Result<(), SourceError> {
        for c in conversations {
            if !self.ids.insert(c.id.clone()) {
                self.stats.count_duplicate(&c.id);
            }
            self.sink.accept(c).map_err(|source| SourceError::Sink {
                path: self.spec.annotations.clone(),
                record: index,
                source,
            })?;
            self.stats.written += 1;
        }
        Ok(())
    }

    fn skip(&mut self, index: usize, skip: Skip) -> Result<(), SourceError> {
        if self.strict {
            return Err(SourceError::Rejected {
                path: self.spec.annotations.clone(),
                record: index,
                reason: skip.reason,
                detail: skip.detail,
            });
        }
        self.stats.count_skip(skip.reason);
        Ok(())
    }
}

/// Counts the bytes read from a reader (for [`Progress`]).
struct CountingReader<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}
