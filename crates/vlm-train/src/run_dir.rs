//! Output folders owned by one run: `output_dir/run.json` names the run that writes there,
//! every checkpoint's trainer state records the same id, and rotation and resume look only at
//! that run's checkpoints.
//!
//! A fresh run refuses a folder that holds another run's checkpoints or metrics unless
//! `overwrite_output_dir` is set (then that run's checkpoints, metrics and loss curve are
//! deleted first). Resuming keeps the id of the checkpoint resumed from.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::checkpoint::{checkpoints_of, TrainerState, CHECKPOINT_PREFIX};
use crate::metrics::{LOSS_CURVE_FILE, METRICS_FILE};
use crate::{Resume, TrainError};

/// File in the output folder naming the run that owns it.
pub const RUN_FILE: &str = "run.json";

/// What `run.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run's id, also in each of its checkpoints' trainer state.
    pub run_id: String,
}

/// The id of the run that owns `output_dir`, if a `run.json` names one.
pub fn run_owner(output_dir: &Path) -> Result<Option<String>, TrainError> {
    let path = output_dir.join(RUN_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrainError::output_dir(&path, e)),
    };
    let record: RunRecord =
        serde_json::from_slice(&bytes).map_err(|e| TrainError::output_dir(&path, e))?;
    Ok(Some(record.run_id))
}

/// A fresh run id: the start time in microseconds and the process id, in hex.
fn new_run_id() -> String {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    format!("{micros:x}-{:x}", std::process::id())
}

/// Claims `output_dir` for the run that `resume` starts: checks it holds no other run (see
/// the module doc), writes `run.json`, and returns the run's id and the checkpoint to resume
/// from.
pub(crate) fn claim_output_dir(
    output_dir: &Path,
    resume: Resume,
    overwrite: bool,
) -> Result<(String, Option<PathBuf>), TrainError> {
    let owner = run_owner(output_dir)?;
    let (run_id, checkpoint) = match resume {
        Resume::No => {
            refuse_other_run(output_dir, owner.as_deref(), overwrite)?;
            (new_run_id(), None)
        }
        Resume::Latest => {
            let latest = checkpoints_of(output_dir, owner.as_deref()).pop();
            let (_, dir) = latest.ok_or_else(|| {
                TrainError::checkpoint(output_dir, "no complete checkpoint to resume from")
            })?;
            (resumed_id(&dir, owner)?, Some(dir))
        }
        Resume::From(dir) => {
            let run_id = resumed_id(&dir, None)?;
            if let Some(owner) = owner.filter(|owner| *owner != run_id && !overwrite) {
                return Err(TrainError::output_dir(
                    output_dir,
                    format!(
                        "belongs to run {owner}, but {} is a checkpoint of run {run_id}: resume \
                         into the checkpoint's own folder, or pass --overwrite-output-dir",
                        dir.display()
                    ),
                ));
            }
            (run_id, Some(dir))
        }
    };
    let record = serde_json::to_vec_pretty(&RunRecord {
        run_id: run_id.clone(),
    })
    .expect("a run record serialises");
    let path = output_dir.join(RUN_FILE);
    fs::write(&path, record).map_err(|e| TrainError::write(&path, e))?;
    Ok((run_id, checkpoint))
}

/// The id of the run of checkpoint `dir`; `owner` (or a fresh one) for a checkpoint written
/// before runs had ids.
fn resumed_id(dir: &Path, owner: Option<String>) -> Result<String, TrainError> {
    let saved = TrainerState::read(dir)?.run_id;
    Ok(match saved.is_empty() {
        true => owner.unwrap_or_else(new_run_id),
        false => saved,
    })
}

/// Fails when `output_dir` holds another run's checkpoints or metrics, unless `overwrite`,
/// which deletes them.
fn refuse_other_run(
    output_dir: &Path,
    owner: Option<&str>,
    overwrite: bool,
) -> Result<(), TrainError> {
    let traces = run_traces(output_dir);
    if traces.is_empty() && owner.is_none() {
        return Ok(());
    }
    if !overwrite {
        let names: Vec<String> = traces
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        return Err(TrainError::output_dir(
            output_dir,
            format!(
                "holds another run ({}{}): resume it with --resume, start this one in another \
                 --output-dir, or pass --overwrite-output-dir to delete it",
                owner.map_or(String::new(), |id| format!("run {id}: ")),
                names.join(", ")
            ),
        ));
    }
    for path in traces {
        let removed = match path.is_dir() {
            true => fs::remove_dir_all(&path),
            false => fs::remove_file(&path),
        };
        removed.map_err(|e| TrainError::write(&path, e))?;
    }
    Ok(())
}

/// The checkpoints, metrics and loss curve a run left in `output_dir`.
fn run_traces(output_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(output_dir) else {
        return Vec::new();
    };
    let mut traces: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.starts_with(CHECKPOINT_PREFIX) || name == METRICS_FILE || name == LOSS_CURVE_FILE
        })
        .map(|entry| entry.path())
        .collect();
    traces.sort();
    traces
}
