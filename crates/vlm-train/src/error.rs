//! The errors of training: configuration, data, model, checkpoint and numeric failures.

use std::path::PathBuf;

use vlm_model::ModelError;

/// A setting of [`TrainConfig`](crate::TrainConfig) that cannot work, named with the value
/// given and what would be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid training setting `{field}` = {value}: {reason}")]
pub struct ConfigError {
    /// The setting, as the TOML key and the CLI flag (without `--`) spell it.
    pub field: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What is wrong and what would work.
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(
        field: &'static str,
        value: impl ToString,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// A config file could not be read or parsed.
    #[error("cannot read the training config {path}: {reason}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },

    /// The model failed (forward pass, loss, export).
    #[error(transparent)]
    Model(#[from] ModelError),

    /// LoRA adapters could not be attached.
    #[error(transparent)]
    Lora(#[from] vlm_lora::LoraError),

    /// The training data failed.
    #[error("training data: {0}")]
    Data(String),

    /// The model has nothing to train in the configured mode, or a part the mode needs is
    /// missing (e.g. LoRA mode without any adapter attached).
    #[error("nothing to train: {0}")]
    NothingToTrain(String),

    /// The loss or a gradient was NaN or infinite and the run is configured to stop on it.
    #[error("non-finite {what} ({value}) at step {step}; stopping (on_non_finite = \"stop\")")]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The value, as text (`NaN`, `inf`).
        value: String,
        /// The optimizer step (1-based) it happened in.
        step: usize,
    },

    /// A file of the run (checkpoint, metrics) could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// The data-parallel peers could not exchange gradients: registration or an all-reduce
    /// failed or timed out (a peer stopped, hangs or cannot be reached).
    #[error("data-parallel training: {0}")]
    Collective(String),

    /// A data-parallel peer could not run: its thread failed to start or panicked.
    #[error("data-parallel peer: {0}")]
    Peer(String),

    /// The output folder cannot take this run: it holds another run's checkpoints or
    /// metrics, or its `run.json` cannot be read.
    #[error("output folder {path}: {reason}")]
    OutputDir {
        /// The folder or its `run.json`.
        path: PathBuf,
        /// What is wrong and what would work.
        reason: String,
    },

    /// `metrics.jsonl` could not be written (e.g. a full disk): the run stopped at the end of
    /// the step, after trying to write a checkpoint of it.
    #[error("{failure}; {}", checkpoint_note(.checkpoint))]
    MetricsFailed {
        /// The failed metrics write.
        failure: Box<TrainError>,
        /// The checkpoint written before stopping, or why it could not be.
        checkpoint: Result<PathBuf, Box<TrainError>>,
    },

    /// A checkpoint to resume from is missing, incomplete or does not fit the model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl TrainError {
    pub(crate) fn write(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Write {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn metrics_failed(failure: TrainError, checkpoint: Result<PathBuf, Self>) -> Self {
        Self::MetricsFailed {
            failure: Box::new(failure),
            checkpoint: checkpoint.map_err(Box::new),
        }
    }

    pub(crate) fn output_dir(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::OutputDir {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::Checkpoint {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// What became of the checkpoint a run tried to write before stopping on a failure.
fn checkpoint_note(checkpoint: &Result<PathBuf, Box<TrainError>>) -> String {
    match checkpoint {
        Ok(path) => format!(
            "stopped after writing {} (resume from it with --resume)",
            path.display()
        ),
        Err(e) => format!("stopped; the checkpoint could not be written either: {e}"),
    }
}
