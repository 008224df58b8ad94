//! Mixed-precision training (`dtype = "bf16"`, as PEFT with autocast does it): the frozen
//! language model and tower in bf16, the projector and LoRA adapters (and so their gradients,
//! AdamW's moments and the checkpoints) in f32. Five LoRA steps track the f32 run's losses,
//! the frozen weights never change, and resuming reproduces the uninterrupted run bit for bit.

mod common;

use std::path::Path;

use burn::optim::GradientsParams;
use burn::tensor::{DType, TensorData};
use common::{config, data, loss, model_in, rng_lock, samples, weights, Vlm};
use vlm_hf::Precision;
use vlm_testkit::TestBackend;
use vlm_train::{
    apply_mode, latest_checkpoint, param_table, Resume, StepReport, TrainConfig, Trainer,
};

/// The largest |loss(bf16 base) - loss(f32)| over the five steps; measured 0.0067 at most
/// (BENCHMARKS.md, "Half precision"). The base's matmul outputs, activations and logits are
/// rounded to bf16's 8-bit mantissa (relative error up to 2^-9 each, ~0.2%); on losses near
/// 6.2 that is a few hundredths at worst, and the rounding errors mostly cancel in the mean.
const LOSS_BOUND: f64 = 0.02;

/// The run's settings: 5 LoRA steps, a checkpoint every 2, the frozen weights in `dtype`.
fn settings(dir: &Path, dtype: Precision) -> TrainConfig {
    TrainConfig {
        max_steps: Some(5),
        save_steps: 2,
        dtype,
        ..config(dir)
    }
}

/// The test model with its language model loaded in `dtype`, LoRA init from `init_seed`.
fn model(dtype: Precision, init_seed: u64) -> Vlm {
    model_in(dtype, true, init_seed, 0.1)
}

/// Trains in `dir` with the frozen weights in `dtype`, from `start` (the model as the run
/// will see it) or a fresh model; stops after `stop` steps when given.
fn run(
    dir: &Path,
    dtype: Precision,
    start: Option<Vlm>,
    stop: Option<usize>,
    resume: Resume,
) -> (Vlm, Vec<StepReport>) {
    let _lock = rng_lock();
    let start = start.unwrap_or_else(|| model(dtype, 1));
    let mut trainer = Trainer::new(settings(dir, dtype), Default::default(), loss).expect("config");
    if let Some(stop) = stop {
        trainer = trainer.stop_after(stop);
    }
    let outcome = trainer
        .fit(start, &mut data(samples(10, 5, None)), resume)
        .expect("fit");
    (outcome.model, outcome.steps)
}

fn losses(steps: &[StepReport]) -> Vec<f64> {
    steps
        .iter()
        .map(|s| s.loss.expect("no step is skipped"))
        .collect()
}

/// Every float parameter's path, float type and whether it trains.
fn dtypes(model: &Vlm) -> Vec<(String, DType, bool)> {
    let read = |value: TensorData, trains| (value.dtype, trains);
    let params = common::params(model, read).into_iter();
    params
        .map(|(path, (dtype, trains))| (path, dtype, trains))
        .collect()
}

/// The frozen parameters are all bf16, the trainable ones (projector and adapters) all f32.
fn assert_mixed(model: &Vlm) {
    let params = dtypes(model);
    let trained: Vec<_> = params.iter().filter(|(_, _, trains)| *trains).collect();
    assert!(trained
        .iter()
        .any(|(path, ..)| path.starts_with("projector")));
    assert!(trained.iter().any(|(path, ..)| path.contains("lora_a")));
    for (path, dtype, trains) in &params {
        let expected = if *trains { DType::F32 } else { DType::BF16 };
        assert_eq!(*dtype, expected, "{path} (trains: {trains})");
    }
}

#[test]
fn five_lora_steps_on_a_bf16_base_track_the_f32_run_and_leave_the_base_untouched() {
    let dirs = tempfile::tempdir().expect("tempdir");
    let (_, reference) = run(
        &dirs.path().join("f32"),
        Precision::F32,
        None,
        None,
        Resume::No,
    );

    let bf16_dir = dirs.path().join("bf16");
    let start = {
        let _lock = rng_lock();
        apply_mode(
            model(Precision::Bf16, 1),
            &settings(&bf16_dir, Precision::Bf16),
        )
    };
    assert_mixed(&start);
    let frozen = |model: &Vlm| {
        let trains: Vec<bool> = dtypes(model).into_iter().map(|(_, _, t)| t).collect();
        let all = weights(model).into_iter().zip(trains);
        all.filter(|(_, trains)| !trains)
            .map(|(w, _)| w)
            .collect::<Vec<_>>()
    };
    let frozen_before = frozen(&start);
    let (trained, steps) = run(&bf16_dir, Precision::Bf16, Some(start), None, Resume::No);

    let (f32_losses, bf16_losses) = (losses(&reference), losses(&steps));
    eprintln!("step | f32 loss | bf16-base loss | difference");
    for (step, (a, b)) in f32_losses.iter().zip(&bf16_losses).enumerate() {
        eprintln!("{} | {a:.5} | {b:.5} | {:+.5}", step + 1, b - a);
    }
    assert_eq!(bf16_losses.len(), 5);
    for (a, b) in f32_losses.iter().zip(&bf16_losses) {
        assert!((a - b).abs() <= LOSS_BOUND, "f32 {a} vs bf16 base {b}");
    }
    assert_ne!(f32_losses, bf16_losses, "the base really ran in bf16");
    assert_mixed(&trained);
    assert!(
        frozen(&trained) == frozen_before,
        "the frozen weights are bit-identical after training"
    );
}

#[test]
fn the_gradients_adamw_keeps_moments_of_are_f32() {
    // AdamW's moments are made from each gradient in its type (m = (1 - b1) g, v = (1 - b2) g^2),
    // so f32 gradients of every trainable parameter mean f32 optimizer state.
    let dir = tempfile::tempdir().expect("tempdir");
    let _lock = rng_lock();
    let model = apply_mode(
        model(Precision::Bf16, 1),
        &settings(dir.path(), Precision::Bf16),
    );
    let batch = common::collate(
        &samples(2, 5, None).iter().collect::<Vec<_>>(),
        &Default::default(),
    )
    .expect("batch");
    let grads = loss(&model, batch).expect("loss").loss.backward();
    let grads = GradientsParams::from_grads(grads, &model);
    let trainable: Vec<_> = param_table(&model)
        .into_iter()
        .filter(|p| p.trainable)
        .collect();
    assert!(!trainable.is_empty());
    for info in trainable {
        let dtype = match info.shape.len() {
            1 => grads.get::<TestBackend, 1>(info.id).map(|g| g.dtype()),
            _ => grads.get::<TestBackend, 2>(info.id).map(|g| g.dtype()),
        };
        assert_eq!(dtype, Some(DType::F32), "{}", info.path);
    }
}

#[test]
fn resuming_a_bf16_base_run_reproduces_the_uninterrupted_one() {
    let dirs = tempfile::tempdir().expect("tempdir");
    let (whole, interrupted) = (dirs.path().join("whole"), dirs.path().join("interrupted"));
    let bits = |steps: &[StepReport]| -> Vec<u64> {
        losses(steps).into_iter().map(f64::to_bits).collect()
    };

    let (reference, all_steps) = run(&whole, Precision::Bf16, None, None, Resume::No);
    let (_, first) = run(&interrupted, Precision::Bf16, None, Some(2), Resume::No);
    assert_eq!(bits(&first), bits(&all_steps)[..2]);
    assert!(latest_checkpoint(&interrupted)
        .expect("checkpoint-2")
        .ends_with("checkpoint-2"));

    // Another initialisation of the adapters: resuming overwrites it from the checkpoint.
    let start = {
        let _lock = rng_lock();
        model(Precision::Bf16, 99)
    };
    let (resumed, rest) = run(
        &interrupted,
        Precision::Bf16,
        Some(start),
        None,
        Resume::Latest,
    );
    assert_eq!(rest.first().map(|s| s.step), Some(3));
    assert_eq!(bits(&rest), bits(&all_steps)[2..], "the same losses");
    assert_mixed(&resumed);
    assert_eq!(dtypes(&resumed), dtypes(&reference));
    assert!(
        weights(&resumed) == weights(&reference),
        "final weights bit-identical"
    );
}
