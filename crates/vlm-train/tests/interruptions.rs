//! Interruptions and write failures: a stop flag (what SIGINT / SIGTERM set) ends the run
//! with a checkpoint of the step in progress; a full disk while writing the metrics still
//! checkpoints before stopping; a failed checkpoint leaves the previous one and says why in
//! the OS's words.

mod common;

use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{config, data, loss, model, rng_lock, samples, Train, Vlm};
use vlm_model::{CausalLmLoss, ModelError};
use vlm_train::checkpoint::{checkpoint_dir, TRAINABLE_FILE};
use vlm_train::metrics::METRICS_FILE;
use vlm_train::{
    group_ids, list_checkpoints, param_table, GroupedAdamW, Resume, TrainBatch, TrainConfig,
    TrainError, Trainer, TrainerState,
};

/// The real loss; the `call`-th call also sets `stop`, as a signal arriving mid-step would.
fn stopping_at(
    call: usize,
    stop: Arc<AtomicBool>,
) -> impl Fn(&Vlm, TrainBatch<Train>) -> Result<CausalLmLoss<Train>, ModelError> {
    let calls = std::cell::Cell::new(0);
    move |model, batch| {
        calls.set(calls.get() + 1);
        if calls.get() == call {
            stop.store(true, Ordering::Relaxed);
        }
        loss(model, batch)
    }
}

/// Projector mode, 6 steps of 2 micro-batches, a log line every step, checkpoints only at
/// `save_steps`.
fn quick_config(dir: &Path, save_steps: usize) -> TrainConfig {
    let mut config = config(dir);
    config.mode = vlm_train::TrainMode::Projector;
    config.save_steps = save_steps;
    config.save_total_limit = None;
    config.logging_steps = 1;
    config
}

#[test]
fn the_stop_flag_checkpoints_the_step_in_progress_and_the_run_resumes_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = quick_config(dir.path(), 5);
    let _lock = rng_lock();
    let stop = Arc::new(AtomicBool::new(false));
    // Micro-batch 3 is the first of step 2.
    let outcome = Trainer::new(
        config.clone(),
        Default::default(),
        stopping_at(3, stop.clone()),
    )
    .expect("config")
    .with_stop(stop)
    .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
    .expect("an interruption is not an error of the trainer");
    assert!(outcome.interrupted);
    assert_eq!(outcome.steps.len(), 2, "the step in progress completes");
    let checkpoint = checkpoint_dir(dir.path(), 2);
    assert_eq!(
        outcome.last_checkpoint.as_deref(),
        Some(checkpoint.as_path())
    );
    assert_eq!(TrainerState::read(&checkpoint).expect("state").step, 2);

    let resumed = Trainer::new(config, Default::default(), loss)
        .expect("config")
        .fit(
            model(false, 1),
            &mut data(samples(12, 5, None)),
            Resume::Latest,
        )
        .expect("resume");
    assert!(!resumed.interrupted);
    assert_eq!(resumed.steps.first().map(|s| s.step), Some(3));
    assert_eq!(resumed.state.step, 6);
}

/// Points the descriptor this process holds open on `file` at `/dev/full`: its next write
/// fails with ENOSPC, as on a full disk.
fn fill_disk_under(file: &Path) {
    let file = fs::canonicalize(file).expect("open file");
    let fd = fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(Result::ok)
        .find(|entry| fs::read_link(entry.path()).is_ok_and(|target| target == file))
        .and_then(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .expect("the file is open");
    let full = File::options()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    // SAFETY: both descriptors are open; `fd` is replaced atomically and stays owned by the
    // metrics log, which closes it.
    assert!(unsafe { libc::dup2(full.as_raw_fd(), fd) } >= 0, "dup2");
}

#[test]
fn a_full_disk_while_writing_the_metrics_checkpoints_the_step_before_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = quick_config(dir.path(), 1);
    let metrics = dir.path().join(METRICS_FILE);
    let _lock = rng_lock();
    let error = Trainer::new(config, Default::default(), loss)
        .expect("config")
        .on_step(|report| {
            if report.step == 3 {
                fill_disk_under(&metrics);
            }
        })
        .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
        .err()
        .expect("a failed metrics write stops the run");
    assert!(
        matches!(error, TrainError::MetricsFailed { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "cannot write {}: No space left on device (os error 28)",
            metrics.display()
        )),
        "{message}"
    );
    let checkpoint = checkpoint_dir(dir.path(), 3);
    assert!(
        message.contains(&format!("stopped after writing {}", checkpoint.display())),
        "{message}"
    );
    assert_eq!(TrainerState::read(&checkpoint).expect("state").step, 3);
    let steps: Vec<usize> = list_checkpoints(dir.path()).iter().map(|c| c.0).collect();
    assert_eq!(steps, [1, 2, 3]);
}

#[test]
fn a_failed_checkpoint_keeps_the_previous_one_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = quick_config(dir.path(), 1);
    let _lock = rng_lock();
    let mut exports = 0;
    let error = Trainer::new(config, Default::default(), loss)
        .expect("config")
        .with_export(|_, staging: &Path| {
            exports += 1;
            match exports {
                2 => Err(TrainError::Write {
                    path: staging.join("model"),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                }),
                _ => Ok(()),
            }
        })
        .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
        .err()
        .expect("a failed checkpoint stops the run");
    let message = error.to_string();
    assert!(
        message.contains("No space left on device (os error 28)"),
        "{message}"
    );
    let left: Vec<String> = fs::read_dir(dir.path())
        .expect("output folder")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains("checkpoint"))
        .collect();
    assert_eq!(
        left,
        ["checkpoint-1"],
        "no partial checkpoint-2, no staging"
    );
    let previous = checkpoint_dir(dir.path(), 1);
    assert_eq!(TrainerState::read(&previous).expect("state").step, 1);
    assert!(previous.join(TRAINABLE_FILE).is_file());
}

#[test]
fn a_full_disk_while_saving_the_optimizer_state_names_the_file_and_the_os_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = quick_config(dir.path(), 1);
    let model = vlm_train::apply_mode(model(false, 1), &config);
    let table = param_table(&model);
    let optimizer = GroupedAdamW::<Vlm, Train>::new(&config, group_ids(&table).keys().copied());
    let state = dir.path().join("optimizer");
    fs::create_dir(&state).expect("state folder");
    let file: PathBuf = state.join("projector.mpk");
    std::os::unix::fs::symlink("/dev/full", &file).expect("symlink");
    let error = optimizer.save(&state, &table).expect_err("the write fails");
    let message = error.to_string();
    assert_eq!(
        message,
        format!(
            "cannot write {}: No space left on device (os error 28)",
            file.display()
        )
    );
}
