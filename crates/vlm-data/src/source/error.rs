//! Errors of reading a source: every variant names the annotation file, and the record (its
//! 0-based index in the file's top-level array) where there is one.

use std::path::PathBuf;

use super::SkipReason;

/// Why a source could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The annotation file could not be opened or read.
    #[error("cannot read annotation file {}: {source}", path.display())]
    Io {
        /// The annotation file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The source's image folder does not exist or is not a folder.
    #[error("image folder {}: {source}", path.display())]
    ImageFolder {
        /// The folder as given.
        path: PathBuf,
        /// Why it cannot be used.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON, or its top level is not an array. Reading stops here: a
    /// broken JSON text cannot be resynchronised. `record` is the index of the array element
    /// being read when the error was found.
    #[error("{} is not a valid JSON array of records (at record {record}): {source}", path.display())]
    Json {
        /// The annotation file.
        path: PathBuf,
        /// The element being read.
        record: usize,
        /// serde_json's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// Strict mode: a record (or one caption of it) would have been skipped.
    #[error("{}, record {record}: {reason}: {detail} (strict mode refuses what it would skip)", path.display())]
    Rejected {
        /// The annotation file.
        path: PathBuf,
        /// The record's index in the file's array.
        record: usize,
        /// The kind of problem, as counted when not strict.
        reason: SkipReason,
        /// What exactly is wrong.
        detail: String,
    },
    /// The sink refused a sample (e.g. writing the manifest failed).
    #[error("cannot write sample of {}, record {record}: {source}", path.display())]
    Sink {
        /// The annotation file.
        path: PathBuf,
        /// The record the sample came from.
        record: usize,
        /// The sink's I/O error.
        #[source]
        source: std::io::Error,
    },
}
