//! The NaN/inf guard, all-masked batches, logs and the loss curve.

mod common;

use std::cell::Cell;

use common::{config, data, loss, model, rng_lock, samples, weights, Train, Vlm};
use vlm_model::{CausalLmLoss, ModelError};
use vlm_train::metrics::{read_records, MetricsRecord, LOSS_CURVE_FILE, METRICS_FILE};
use vlm_train::{NonFinitePolicy, Resume, TrainBatch, TrainError, TrainMode, Trainer};

/// The real loss, but NaN in the `bad`-th call.
fn poisoned(
    bad: usize,
) -> impl Fn(&Vlm, TrainBatch<Train>) -> Result<CausalLmLoss<Train>, ModelError> {
    let calls = Cell::new(0);
    move |model, batch| {
        calls.set(calls.get() + 1);
        let mut out = loss(model, batch)?;
        if calls.get() == bad {
            out.loss = out.loss.mul_scalar(f64::NAN);
        }
        Ok(out)
    }
}

#[test]
fn a_non_finite_loss_skips_the_step_or_stops_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.mode = TrainMode::Projector;
    cfg.max_steps = Some(3);
    cfg.save_steps = 0;
    let _lock = rng_lock();

    // Micro-batch 3 is the first of step 2.
    let mut before_step_2 = None;
    let mut after_step_2 = None;
    {
        let mut trainer =
            Trainer::new(cfg.clone(), Default::default(), poisoned(3)).expect("config");
        let outcome = trainer
            .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
            .expect("a skipped step does not stop the run");
        let steps = &outcome.steps;
        assert_eq!(steps.len(), 3);
        assert!(steps[0].skipped.is_none() && steps[2].skipped.is_none());
        let reason = steps[1].skipped.as_deref().expect("step 2 skipped");
        assert!(reason.contains("non-finite loss"), "{reason}");
        assert!(
            steps[1].learning_rates.is_empty(),
            "no update in a skipped step"
        );
        assert_eq!(outcome.state.skipped_steps, 1);
        let records = read_records(&dir.path().join(METRICS_FILE));
        assert!(records.iter().any(|(r, _)| matches!(r, MetricsRecord::Skipped { step: 2, reason } if reason.contains("non-finite"))));

        // The skipped step leaves the weights as they were: train 1 step, compare.
        let mut one = cfg.clone();
        one.output_dir = dir.path().join("one");
        one.max_steps = Some(3);
        let mut trainer = Trainer::new(one, Default::default(), poisoned(3))
            .expect("config")
            .stop_after(1);
        let first = trainer
            .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
            .expect("one step");
        before_step_2.replace(weights(&first.model));
        let mut two = cfg.clone();
        two.output_dir = dir.path().join("two");
        let mut trainer = Trainer::new(two, Default::default(), poisoned(3))
            .expect("config")
            .stop_after(2);
        let second = trainer
            .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
            .expect("two steps");
        after_step_2.replace(weights(&second.model));
    }
    assert_eq!(
        before_step_2, after_step_2,
        "the skipped step changed no weight"
    );

    cfg.on_non_finite = NonFinitePolicy::Stop;
    cfg.output_dir = dir.path().join("stop");
    let mut trainer = Trainer::new(cfg, Default::default(), poisoned(3)).expect("config");
    let err = trainer
        .fit(model(false, 1), &mut data(samples(12, 5, None)), Resume::No)
        .err()
        .expect("stops");
    assert!(
        matches!(
            err,
            TrainError::NonFinite {
                what: "loss",
                step: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_all_masked_micro_batch_is_reported_not_averaged_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.mode = TrainMode::Projector;
    cfg.per_device_train_batch_size = 1;
    cfg.max_steps = Some(2);
    cfg.save_steps = 0;
    cfg.logging_steps = 1;
    let _lock = rng_lock();
    // Batches of one sample: the masked sample is a whole micro-batch without supervision.
    let all = samples(4, 5, Some(2));
    let mut data = common::data_in_batches(all.clone(), 1);
    let mut trainer = Trainer::new(cfg, Default::default(), loss).expect("config");
    let outcome = trainer
        .fit(model(false, 1), &mut data, Resume::No)
        .expect("fit");
    let records = read_records(&dir.path().join(METRICS_FILE));
    let masked: Vec<&MetricsRecord> = records
        .iter()
        .map(|(r, _)| r)
        .filter(|r| matches!(r, MetricsRecord::Skipped { reason, .. } if reason.contains("no supervised token")))
        .collect();
    assert_eq!(masked.len(), 1, "{records:?}");
    for step in &outcome.steps {
        let loss = step.loss.expect("a loss");
        assert!(
            loss.is_finite() && loss > 0.1,
            "the masked batch is not averaged in as 0: {loss}"
        );
    }
    // The loss and the counts of the step with the masked batch are those of its other batch.
    let total: usize = outcome.steps.iter().map(|s| s.supervised_tokens).sum();
    let expected: usize = all
        .iter()
        .map(|s| s.labels.iter().skip(1).filter(|&&l| l != -100).count())
        .sum();
    assert_eq!(total, expected);
}

#[test]
fn logs_metrics_and_draws_the_loss_curve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path());
    cfg.mode = TrainMode::Projector;
    cfg.logging_steps = 1;
    let _lock = rng_lock();
    let mut trainer = Trainer::new(cfg, Default::default(), loss).expect("config");
    let outcome = trainer
        .fit(model(false, 1), &mut data(samples(10, 5, None)), Resume::No)
        .expect("fit");
    let records = read_records(&outcome.metrics);
    let logs: Vec<&MetricsRecord> = records
        .iter()
        .map(|(r, _)| r)
        .filter(|r| matches!(r, MetricsRecord::Log { .. }))
        .collect();
    assert_eq!(logs.len(), 6);
    let MetricsRecord::Log {
        lr,
        loss,
        grad_norm,
        tokens_per_s,
        images_per_s,
        ..
    } = logs[5]
    else {
        unreachable!()
    };
    assert!(
        lr.contains_key("projector") && lr.contains_key("projector_no_decay"),
        "{lr:?}"
    );
    assert!(loss.is_some() && grad_norm.is_some());
    assert!(*tokens_per_s > 0.0 && *images_per_s > 0.0);
    let curve = outcome.loss_curve.expect("a loss curve");
    assert_eq!(curve, dir.path().join(LOSS_CURVE_FILE));
    let png = std::fs::read(&curve).expect("png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
}
