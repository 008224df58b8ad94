//! Training checkpoints: `output_dir/checkpoint-N/`, written atomically, rotated, found again.
//!
//! A checkpoint folder holds
//!
//! - `trainer_state.json` ([`TrainerState`]): step, schedule, data position, seed, counters;
//! - `train_config.toml`: the run's [`TrainConfig`];
//! - `trainable.safetensors`: every trainable parameter by module path, bit-exact;
//! - `optimizer/<group>.mpk` and `optimizer/param_paths.json`: each AdamW group's moments;
//! - whatever the run's model export writes (for a Qwen VLM: the `vlm-model` checkpoint,
//!   projector safetensors, `vlm_config.json`, the PEFT adapter).
//!
//! It is written into a hidden staging folder beside its destination
//! (`.checkpoint-N.tmp-XXXX`), flushed, then renamed into place: a process killed mid-write
//! leaves only the staging folder (removed when the next run starts), never a partial
//! `checkpoint-N`, so the previous checkpoint stays the latest complete one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vlm_data::Position;
use vlm_hf::{HfError, StagedDir};

use crate::run_dir::run_owner;
use crate::{Schedule, TrainError};

/// File of the trainer's state in a checkpoint.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// File of the run's config in a checkpoint.
pub const TRAIN_CONFIG_FILE: &str = "train_config.toml";
/// File of the trainable parameters in a checkpoint.
pub const TRAINABLE_FILE: &str = "trainable.safetensors";
/// Folder of the optimizer state in a checkpoint.
pub const OPTIMIZER_DIR: &str = "optimizer";
/// Folder in a checkpoint holding the `vlm-model` checkpoint the programs load
/// (`run/checkpoint-N/model`).
pub const MODEL_DIR: &str = "model";
/// Prefix of checkpoint folder names (`checkpoint-120`).
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";
const STAGING_PREFIX: &str = ".checkpoint-";
const STAGING_MARK: &str = ".tmp-";

/// Where the run is: everything besides weights and optimizer moments that resuming needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// The id of the run that wrote the checkpoint (its output folder's `run.json`); empty in
    /// checkpoints written before runs had ids.
    #[serde(default)]
    pub run_id: String,
    /// Optimizer steps done.
    pub step: usize,
    /// The learning-rate schedule (warmup, total steps).
    pub schedule: Schedule,
    /// Where the data source stands (after the last micro-batch of the last step).
    pub data: Position,
    /// Micro-batches per epoch when the run started (a resumed run checks it).
    pub batches_per_epoch: usize,
    /// The run's seed. Random state is not carried over opaquely: the data order is drawn
    /// from (seed, epoch) and the backend's generator (dropout) is reseeded from (seed, step)
    /// before every step, so seed and position determine it.
    pub seed: u64,
    /// Samples trained on so far.
    pub samples_seen: u64,
    /// Real tokens trained on so far.
    pub tokens_seen: u64,
    /// Images trained on so far.
    pub images_seen: u64,
    /// Optimizer steps skipped (non-finite loss or gradient, or no supervised token).
    pub skipped_steps: usize,
    /// The loss of the last completed step.
    pub last_loss: Option<f64>,
}

impl TrainerState {
    /// Epochs done, from the steps (`accumulation` micro-batches each): exact when an epoch
    /// is a whole number of steps.
    pub fn epochs_done(&self, accumulation: usize) -> f64 {
        let steps_per_epoch = self.batches_per_epoch.div_ceil(accumulation).max(1);
        self.step as f64 / steps_per_epoch as f64
    }

    /// Reads `trainer_state.json` of a checkpoint folder.
    pub fn read(checkpoint: &Path) -> Result<Self, TrainError> {
        let path = checkpoint.join(TRAINER_STATE_FILE);
        let bytes = fs::read(&path).map_err(|e| TrainError::checkpoint(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| TrainError::checkpoint(&path, e))
    }
}

/// `output_dir/checkpoint-{step}`.
pub fn checkpoint_dir(output_dir: &Path, step: usize) -> PathBuf {
    output_dir.join(format!("{CHECKPOINT_PREFIX}{step}"))
}

/// The complete checkpoints of the run that owns `output_dir` (folders `checkpoint-N`
/// holding a trainer state of the run named by its `run.json`; every one when no run is
/// named), sorted by step.
pub fn list_checkpoints(output_dir: &Path) -> Vec<(usize, PathBuf)> {
    let owner = run_owner(output_dir).ok().flatten();
    checkpoints_of(output_dir, owner.as_deref())
}

/// The complete checkpoints of `output_dir` written by run `run_id` (by any run when `None`),
/// sorted by step.
pub(crate) fn checkpoints_of(output_dir: &Path, run_id: Option<&str>) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = fs::read_dir(output_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let step = name.strip_prefix(CHECKPOINT_PREFIX)?.parse().ok()?;
            let path = entry.path();
            let state = TrainerState::read(&path).ok()?;
            run_id
                .is_none_or(|id| state.run_id == id)
                .then_some((step, path))
        })
        .collect();
    found.sort();
    found
}

/// The checkpoint of `output_dir`'s run with the highest step, if any.
pub fn latest_checkpoint(output_dir: &Path) -> Option<PathBuf> {
    list_checkpoints(output_dir).pop().map(|(_, path)| path)
}

/// Writes checkpoint `step` atomically: `write` fills a staging folder, which is flushed and
/// renamed to `checkpoint-{step}` (replacing an older folder of that name). Returns the
/// checkpoint's path.
pub(crate) fn write_checkpoint(
    output_dir: &Path,
    step: usize,
    write: impl FnOnce(&Path) -> Result<(), TrainError>,
) -> Result<PathBuf, TrainError> {
    let prefix = format!("{STAGING_PREFIX}{step}{STAGING_MARK}");
    let staged = StagedDir::new(checkpoint_dir(output_dir, step), &prefix).map_err(write_error)?;
    write(staged.path())?;
    staged.commit().map_err(write_error)
}

/// A failed folder write of [`StagedDir`] as the run's [`TrainError::Write`].
pub(crate) fn write_error(error: HfError) -> TrainError {
    match error {
        HfError::Write { path, source } => TrainError::Write { path, source },
        other => TrainError::Model(other.into()),
    }
}

/// Deletes the oldest checkpoints beyond `limit`, never `keep`.
pub(crate) fn rotate(output_dir: &Path, limit: usize, keep: &Path) -> Result<(), TrainError> {
    let checkpoints = list_checkpoints(output_dir);
    let excess = checkpoints.len().saturating_sub(limit);
    for (_, path) in checkpoints.into_iter().take(excess) {
        if path != keep {
            fs::remove_dir_all(&path).map_err(|e| TrainError::write(&path, e))?;
        }
    }
    Ok(())
}

/// Removes staging folders left by a writer that died mid-checkpoint. Only for the process
/// that owns `output_dir` (one run writes there at a time).
pub(crate) fn remove_stale_staging(output_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(output_dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(STAGING_PREFIX)
            && name.contains(STAGING_MARK)
            && fs::remove_dir_all(entry.path()).is_ok()
        {
            removed.push(entry.path());
        }
    }
    removed
}

/// Writes `bytes` to `path` and flushes them to disk.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let mut file = File::create(path).map_err(|e| TrainError::write(path, e))?;
    file.write_all(bytes)
        .map_err(|e| TrainError::write(path, e))?;
    file.sync_all().map_err(|e| TrainError::write(path, e))
}
