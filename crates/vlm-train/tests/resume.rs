//! Resuming reproduces the uninterrupted run: the same loss at every step and the same final
//! weights, bit for bit; a process killed while writing a checkpoint leaves the previous one
//! loadable and resumable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, data, loss, model, rng_lock, samples, weights, Vlm};
use vlm_train::checkpoint::TRAINABLE_FILE;
use vlm_train::{
    latest_checkpoint, list_checkpoints, Resume, StepReport, TrainError, Trainer, TrainerState,
};

fn losses(steps: &[StepReport]) -> Vec<(usize, u64)> {
    steps
        .iter()
        .map(|s| (s.step, s.loss.expect("no step is skipped").to_bits()))
        .collect()
}

/// Trains a fresh model (LoRA init from `init_seed`) in `dir`; stops after `stop` steps when
/// given.
fn run(dir: &Path, init_seed: u64, stop: Option<usize>, resume: Resume) -> (Vlm, Vec<StepReport>) {
    let _lock = rng_lock();
    let mut trainer = Trainer::new(config(dir), Default::default(), loss).expect("config");
    if let Some(stop) = stop {
        trainer = trainer.stop_after(stop);
    }
    let mut data = data(samples(10, 5, None));
    let outcome = trainer
        .fit(model(true, init_seed), &mut data, resume)
        .expect("fit");
    (outcome.model, outcome.steps)
}

#[test]
fn resuming_reproduces_the_uninterrupted_run() {
    let dirs = tempfile::tempdir().expect("tempdir");
    let (whole, interrupted) = (dirs.path().join("whole"), dirs.path().join("interrupted"));

    let (reference, all_steps) = run(&whole, 1, None, Resume::No);
    assert_eq!(all_steps.len(), 6);
    // 10 samples in batches of 2, 2 per step: steps 3 and 6 start a new epoch (short window).
    let (_, first_half) = run(&interrupted, 1, Some(3), Resume::No);
    assert_eq!(losses(&first_half), losses(&all_steps)[..3]);
    let checkpoint = latest_checkpoint(&interrupted).expect("checkpoint at step 3");
    assert!(checkpoint.ends_with("checkpoint-3"));

    // Another initialisation of the adapters: resuming must overwrite it from the checkpoint.
    let (resumed, second_half) = run(&interrupted, 99, None, Resume::Latest);
    assert_eq!(second_half.first().map(|s| s.step), Some(4));
    assert_eq!(
        losses(&second_half),
        losses(&all_steps)[3..],
        "the losses after resuming are those of the uninterrupted run"
    );
    for (s, reference) in second_half.iter().zip(&all_steps[3..]) {
        assert_eq!(s.learning_rates, reference.learning_rates);
        assert_eq!(
            s.grad_norm.map(f64::to_bits),
            reference.grad_norm.map(f64::to_bits)
        );
    }
    assert_eq!(
        weights(&resumed),
        weights(&reference),
        "final weights bit-identical"
    );

    // Both runs end with the same checkpoint files (weights) and state, but for the id of the
    // run that wrote them.
    let a = std::fs::read(whole.join("checkpoint-6").join(TRAINABLE_FILE)).expect("whole");
    let b = std::fs::read(interrupted.join("checkpoint-6").join(TRAINABLE_FILE)).expect("resumed");
    assert!(a == b, "{TRAINABLE_FILE} differs");
    let state = |dir: &Path| TrainerState::read(&dir.join("checkpoint-6")).expect("state");
    let (whole_state, resumed_state) = (state(&whole), state(&interrupted));
    assert_ne!(
        whole_state.run_id, resumed_state.run_id,
        "two runs, two ids"
    );
    assert_eq!(
        TrainerState {
            run_id: resumed_state.run_id.clone(),
            ..whole_state
        },
        resumed_state
    );
    // Rotation kept the last two.
    let kept: Vec<usize> = list_checkpoints(&interrupted)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(kept, [3, 6]);
}

#[test]
fn resuming_from_a_named_checkpoint_and_refusing_a_mismatched_one() {
    let dirs = tempfile::tempdir().expect("tempdir");
    let dir = dirs.path().join("run");
    let (_, steps) = run(&dir, 1, None, Resume::No);
    let (_, again) = run(&dir, 2, None, Resume::From(dir.join("checkpoint-3")));
    assert_eq!(losses(&again), losses(&steps)[3..]);

    let _lock = rng_lock();
    let mut other = config(&dir);
    other.seed = 12;
    let mut trainer = Trainer::new(other, Default::default(), loss).expect("config");
    let mut data = data(samples(10, 5, None));
    let err = trainer
        .fit(model(true, 1), &mut data, Resume::Latest)
        .err()
        .expect("another seed cannot resume");
    assert!(matches!(err, TrainError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("seed"), "{err}");

    let empty = dirs.path().join("empty");
    let err = Trainer::new(config(&empty), Default::default(), loss)
        .expect("config")
        .fit(model(true, 1), &mut data, Resume::Latest)
        .err()
        .expect("nothing to resume");
    assert!(err.to_string().contains("no complete checkpoint"), "{err}");
}

/// Environment variable that turns [`killed_child`] into the child of the kill test.
const CHILD_DIR: &str = "VLM_TRAIN_KILL_TEST_DIR";
/// File the child creates once it is inside the writing of its second checkpoint.
const PAUSED: &str = "child-paused";

/// The child process of [`a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one`]:
/// trains with checkpoints every 2 steps and, while writing the second one (step 4), writes
/// part of a file, signals the parent and waits to be killed. Does nothing when run normally.
#[test]
fn killed_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut cfg = config(&dir.join("run"));
    cfg.save_steps = 2;
    let mut writes = 0;
    let _lock = rng_lock();
    let mut trainer = Trainer::new(cfg, Default::default(), loss)
        .expect("config")
        .with_export(|_model: &Vlm, staging: &Path| {
            writes += 1;
            if writes == 2 {
                std::fs::write(staging.join("half-written.bin"), [0u8; 10]).expect("write");
                std::fs::write(dir.join(PAUSED), b"").expect("signal");
                std::thread::sleep(Duration::from_secs(600));
            }
            Ok(())
        });
    let mut data = data(samples(10, 5, None));
    let _ = trainer.fit(model(true, 1), &mut data, Resume::No);
}

#[test]
fn a_process_killed_while_writing_a_checkpoint_leaves_the_previous_one() {
    let dirs = tempfile::tempdir().expect("tempdir");
    let run_dir = dirs.path().join("run");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["killed_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dirs.path())
        .spawn()
        .expect("spawn the child");
    let start = Instant::now();
    while !dirs.path().join(PAUSED).exists() {
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the child ended ({status}) before pausing in its checkpoint");
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the child never paused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");

    // Checkpoint 2 is complete; checkpoint 4 exists only as its staging folder.
    let complete: Vec<usize> = list_checkpoints(&run_dir)
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(complete, [2]);
    assert!(!run_dir.join("checkpoint-4").exists());
    let staging: Vec<String> = std::fs::read_dir(&run_dir)
        .expect("run dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".checkpoint-4"))
        .collect();
    assert_eq!(
        staging.len(),
        1,
        "the half-written checkpoint is left in its staging folder"
    );
    let state = TrainerState::read(&run_dir.join("checkpoint-2")).expect("loadable");
    assert_eq!(state.step, 2);

    // Resuming continues from step 2 exactly as an uninterrupted run does.
    let mut cfg = config(&run_dir);
    cfg.save_steps = 2;
    let reference_dir = dirs.path().join("reference");
    let mut reference_cfg = cfg.clone();
    reference_cfg.output_dir = reference_dir;
    let _lock = rng_lock();
    let mut reference = Trainer::new(reference_cfg, Default::default(), loss).expect("config");
    let expected = reference
        .fit(model(true, 1), &mut data(samples(10, 5, None)), Resume::No)
        .expect("reference run")
        .steps;
    let mut trainer = Trainer::new(cfg, Default::default(), loss).expect("config");
    let resumed = trainer
        .fit(
            model(true, 7),
            &mut data(samples(10, 5, None)),
            Resume::Latest,
        )
        .expect("resume after the kill")
        .steps;
    assert_eq!(resumed.first().map(|s| s.step), Some(3));
    assert_eq!(losses(&resumed), losses(&expected)[2..]);
    let left: Vec<String> = std::fs::read_dir(&run_dir)
        .expect("run dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".checkpoint-"))
        .collect();
    assert!(
        left.is_empty(),
        "the stale staging folder is removed: {left:?}"
    );
}
