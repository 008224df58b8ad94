//! `--checkpoint` (chat, serve, eval, merge, forward) finds the model in a model folder, a
//! training checkpoint (`checkpoint-N/model`) or a run folder (its latest complete
//! checkpoint), and says what it expected otherwise.

use std::path::Path;

use vlm::cli::checkpoint_path;
use vlm::data::Position;
use vlm::model::CONFIG_FILE;
use vlm::train::checkpoint::{MODEL_DIR, TRAINER_STATE_FILE};
use vlm::train::{LrSchedule, Schedule, TrainerState};

/// Writes a trainer state (what marks a checkpoint complete) of step `step` into `checkpoint`.
fn write_trainer_state(checkpoint: &Path, step: usize) {
    let state = TrainerState {
        run_id: String::new(),
        step,
        schedule: Schedule::new(LrSchedule::Constant, 0, step),
        data: Position::start_of(0),
        batches_per_epoch: 1,
        seed: 0,
        samples_seen: 0,
        tokens_seen: 0,
        images_seen: 0,
        skipped_steps: 0,
        last_loss: None,
    };
    let json = serde_json::to_string(&state).expect("state json");
    std::fs::write(checkpoint.join(TRAINER_STATE_FILE), json).expect("state");
}

/// `run/checkpoint-{step}` with a model inside, and a trainer state when `complete`.
fn training_checkpoint(run: &Path, step: usize, complete: bool) -> std::path::PathBuf {
    let checkpoint = run.join(format!("checkpoint-{step}"));
    let model = checkpoint.join(MODEL_DIR);
    std::fs::create_dir_all(&model).expect("mkdir");
    std::fs::write(model.join(CONFIG_FILE), "{}").expect("config");
    if complete {
        write_trainer_state(&checkpoint, step);
    }
    model
}

fn resolve(dir: &Path) -> Result<std::path::PathBuf, String> {
    checkpoint_path(dir.to_str().expect("utf-8")).map_err(|e| e.to_string())
}

#[test]
fn a_model_folder_a_training_checkpoint_and_a_run_folder_give_the_model() {
    let run = tempfile::tempdir().expect("tempdir");
    let model_20 = training_checkpoint(run.path(), 20, true);
    let model_60 = training_checkpoint(run.path(), 60, true);
    training_checkpoint(run.path(), 80, false);
    assert_eq!(resolve(&model_20).unwrap(), model_20);
    assert_eq!(
        resolve(&run.path().join("checkpoint-20")).unwrap(),
        model_20
    );
    assert_eq!(resolve(run.path()).unwrap(), model_60, "latest complete");
}

#[test]
fn a_folder_without_a_model_is_refused_with_a_hint() {
    let run = tempfile::tempdir().expect("tempdir");
    let err = resolve(run.path()).unwrap_err();
    assert!(
        err.contains("checkpoint-N") && err.contains(CONFIG_FILE),
        "{err}"
    );
    let err = resolve(&run.path().join("missing")).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    std::fs::create_dir_all(run.path().join("checkpoint-5")).expect("mkdir");
    write_trainer_state(&run.path().join("checkpoint-5"), 5);
    let err = resolve(run.path()).unwrap_err();
    assert!(err.contains("step 5"), "{err}");
}
