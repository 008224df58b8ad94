//! `--checkpoint` (chat, serve, eval, merge, forward) finds the model in a model folder, a
//! training checkpoint (`checkpoint-N/model`) or a run folder (its latest complete
//! checkpoint), and says what it expected otherwise.

use std::path::Path;

use vlm::cli::{checkpoint_path, TRAINING_CHECKPOINT_MODEL_DIR};
use vlm::model::CONFIG_FILE;
use vlm::train::checkpoint::TRAINER_STATE_FILE;

/// `run/checkpoint-{step}` with a model inside, and a trainer state when `complete`.
fn training_checkpoint(run: &Path, step: usize, complete: bool) -> std::path::PathBuf {
    let checkpoint = run.join(format!("checkpoint-{step}"));
    let model = checkpoint.join(TRAINING_CHECKPOINT_MODEL_DIR);
    std::fs::create_dir_all(&model).expect("mkdir");
    std::fs::write(model.join(CONFIG_FILE), "{}").expect("config");
    if complete {
        std::fs::write(checkpoint.join(TRAINER_STATE_FILE), "{}").expect("state");
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
    std::fs::write(
        run.path().join("checkpoint-5").join(TRAINER_STATE_FILE),
        "{}",
    )
    .expect("state");
    let err = resolve(run.path()).unwrap_err();
    assert!(err.contains("step 5"), "{err}");
}
