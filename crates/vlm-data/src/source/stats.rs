//! Per-source counts: records read, samples written, and what was skipped, by reason.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

/// Why a record (or, for [`SkipReason::EmptyCaption`], one caption) was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// The record does not have the format's fields and types (e.g. no `conversations` list,
    /// a number where a string belongs, not a JSON object at all).
    Malformed,
    /// A turn's speaker is neither `human`/`user` nor `gpt`/`assistant`.
    UnknownRole,
    /// The conversation would be rejected by the training loader (no turns, roles out of order,
    /// an empty answer, `<image>` placeholders that do not match the image, ...): the loader's
    /// own reason.
    Invalid(crate::skip::SkipReason),
    /// The image file named by the record is not in the image folder.
    MissingImage,
    /// The record's image name leaves the image folder (an absolute path, `..`, or a symlink
    /// resolving outside it) and the source does not allow that.
    ImageOutsideRoot,
    /// The image file exists but does not decode (checked with [`ImageCheck::Decode`]).
    ///
    /// [`ImageCheck::Decode`]: super::ImageCheck::Decode
    BadImage,
    /// An AI Challenger caption that is empty or only whitespace.
    EmptyCaption,
}

impl SkipReason {
    /// A short snake_case name, as printed in count tables (the loader's name for
    /// [`SkipReason::Invalid`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed_record",
            Self::UnknownRole => "unknown_role",
            Self::Invalid(reason) => reason.as_str(),
            Self::MissingImage => "missing_image_file",
            Self::ImageOutsideRoot => "image_outside_root",
            Self::BadImage => "undecodable_image",
            Self::EmptyCaption => "empty_caption",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What reading one source did.
///
/// Skips count records, except [`SkipReason::EmptyCaption`], which counts captions (a record
/// with one empty caption out of five still gives its other four).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Records (top-level array elements) read from the annotation file.
    pub records: usize,
    /// Samples handed to the sink (one AI Challenger record may give several).
    pub written: usize,
    /// Skipped records (or captions), by reason.
    pub skipped: BTreeMap<SkipReason, usize>,
    /// Images that failed to decode, with the decoder's message (each image once).
    pub bad_images: Vec<(PathBuf, String)>,
    /// Samples written whose id an earlier sample of the same source already had. They are
    /// kept (LLaVA-Instruct files repeat ids for several conversations on one image) and
    /// reported, since ids then no longer name one sample.
    pub duplicate_ids: usize,
    /// The first few repeated ids (at most [`DUPLICATE_EXAMPLES`]), each once.
    pub duplicate_examples: Vec<String>,
}

/// How many repeated ids [`SourceStats::duplicate_examples`] keeps.
pub const DUPLICATE_EXAMPLES: usize = 5;

impl SourceStats {
    /// All skips together.
    pub fn skipped_total(&self) -> usize {
        self.skipped.values().sum()
    }

    /// The skips for one reason.
    pub fn skipped_for(&self, reason: SkipReason) -> usize {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }

    /// The skip reasons as `reason: count` pairs joined by `, ` (empty when nothing was
    /// skipped).
    pub fn reasons_line(&self) -> String {
        self.skipped
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn count_duplicate(&mut self, id: &str) {
        self.duplicate_ids += 1;
        let known = self.duplicate_examples.iter().any(|e| e == id);
        if !known && self.duplicate_examples.len() < DUPLICATE_EXAMPLES {
            self.duplicate_examples.push(id.to_owned());
        }
    }

    pub(crate) fn count_skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason).or_insert(0) += 1;
    }
}
