//! Gradient checkpointing (Burn's balanced strategy, what `--gradient-checkpointing` selects)
//! trades time for memory without changing training: a few LoRA steps with and without it
//! give the same losses and the same weights after every update.

mod common;

use burn::backend::autodiff::checkpoint::strategy::BalancedCheckpointing;
use burn::backend::Autodiff;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Device;
use common::{collate_on, config, model_on, rng_lock, samples, weights, ToySample, VlmOn};
use vlm_testkit::TestBackend;
use vlm_train::{Resume, ShuffledData, TrainBatch, TrainError, Trainer};

/// The test backend with activations recomputed in the backward pass.
type Checkpointed = Autodiff<TestBackend, BalancedCheckpointing>;

/// Losses per step and the weights after 3 LoRA steps (2 micro-batches of 2 each, dropout
/// 0.1) on backend `B`.
fn three_steps<B: AutodiffBackend<Device = Device<TestBackend>>>(
) -> (Vec<f64>, Vec<(String, Vec<f32>)>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.max_steps = Some(3);
    cfg.save_steps = 0;
    let _lock = rng_lock();
    let model = model_on::<B>(true, 1, 0.1);
    type Collate<B> = fn(&[&ToySample], &Device<B>) -> Result<TrainBatch<B>, TrainError>;
    let mut data = ShuffledData::new(samples(12, 5, None), 2, 3, collate_on as Collate<B>);
    let loss = |m: &VlmOn<B>, b: TrainBatch<B>| m.forward_loss(b.inputs, b.labels);
    let outcome = Trainer::new(cfg, Default::default(), loss)
        .expect("config")
        .fit(model, &mut data, Resume::No)
        .expect("fit");
    let losses = outcome
        .steps
        .iter()
        .map(|s| s.loss.expect("loss"))
        .collect();
    (losses, weights(&outcome.model))
}

#[test]
fn checkpointing_changes_neither_losses_nor_weights() {
    let (losses, after) = three_steps::<common::Train>();
    let (checkpointed_losses, checkpointed_after) = three_steps::<Checkpointed>();
    assert_eq!(losses.len(), 3);
    assert_eq!(losses, checkpointed_losses, "losses per step");
    assert_eq!(after.len(), checkpointed_after.len());
    for ((path, expected), (_, actual)) in after.iter().zip(&checkpointed_after) {
        let same = expected
            .iter()
            .zip(actual)
            .all(|(e, a)| e.to_bits() == a.to_bits());
        assert!(same, "{path} differs after 3 steps");
    }
}
