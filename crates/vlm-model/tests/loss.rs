//! The shifted cross-entropy: mean over supervised tokens with its count, stability with
//! large logits, and typed errors instead of silent zeros.

use burn::tensor::{Distribution, Int, Tensor, TensorData};
use vlm_model::{causal_lm_loss, ModelError};
use vlm_testkit::{device, TestBackend};

fn labels(rows: &[&[i64]]) -> Tensor<TestBackend, 2, Int> {
    let len = rows[0].len();
    let flat: Vec<i64> = rows.concat();
    Tensor::from_data(TensorData::new(flat, [rows.len(), len]), &device())
}

/// The mean over the supervised shifted targets of `-log softmax(logits)[target]`, in f64.
fn manual_loss(logits: &Tensor<TestBackend, 3>, labels: &[&[i64]]) -> f64 {
    let [_, seq, vocab] = logits.dims();
    let values: Vec<f64> = logits.to_data().iter::<f64>().collect();
    let (mut total, mut count) = (0.0, 0);
    for (sample, row) in labels.iter().enumerate() {
        for position in 0..seq - 1 {
            let target = row[position + 1];
            if target == -100 {
                continue;
            }
            let start = (sample * seq + position) * vocab;
            let logits = &values[start..start + vocab];
            let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = logits.iter().map(|l| (l - max).exp()).sum::<f64>().ln() + max;
            total += log_sum - logits[target as usize];
            count += 1;
        }
    }
    total / f64::from(count)
}

#[test]
fn the_mean_is_over_supervised_tokens_of_the_whole_batch() {
    let logits = Tensor::random([2, 5, 11], Distribution::Normal(0.0, 2.0), &device());
    let rows: [&[i64]; 2] = [&[3, -100, 4, 5, 6], &[-100, -100, -100, 7, -100]];
    let loss = causal_lm_loss(logits.clone(), labels(&rows)).expect("loss");
    assert_eq!(
        loss.supervised_tokens, 4,
        "the first label is never a target"
    );
    let expected = manual_loss(&logits, &rows);
    let actual = f64::from(loss.loss.into_scalar());
    assert!((actual - expected).abs() < 1e-5, "{actual} vs {expected}");
}

#[test]
fn huge_logits_stay_finite_and_exact() {
    let logits = Tensor::random([1, 4, 50], Distribution::Normal(0.0, 1.0), &device()) * 1e4;
    let rows: [&[i64]; 1] = [&[-100, 1, 2, 3]];
    let loss = causal_lm_loss(logits.clone(), labels(&rows)).expect("loss");
    let actual = f64::from(loss.loss.into_scalar());
    let expected = manual_loss(&logits, &rows);
    assert!(actual.is_finite());
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{actual} vs {expected}"
    );
}

#[test]
fn no_supervised_token_is_an_error_not_a_zero() {
    let logits = Tensor::<TestBackend, 3>::zeros([2, 3, 7], &device());
    // Only the first position has a label, which the shift drops.
    let rows: [&[i64]; 2] = [&[4, -100, -100], &[-100, -100, -100]];
    let err = causal_lm_loss(logits.clone(), labels(&rows)).expect_err("nothing to learn");
    assert!(matches!(err, ModelError::NoSupervisedTokens));
    let single = Tensor::<TestBackend, 3>::zeros([1, 1, 7], &device());
    let err = causal_lm_loss(single, labels(&[&[4]])).expect_err("no next token");
    assert!(matches!(err, ModelError::NoSupervisedTokens));
}

#[test]
fn a_label_outside_the_vocabulary_is_named() {
    let logits = Tensor::<TestBackend, 3>::zeros([2, 3, 7], &device());
    let rows: [&[i64]; 2] = [&[1, 2, 3], &[-100, 5, 7]];
    let err = causal_lm_loss(logits.clone(), labels(&rows)).expect_err("7 >= 7");
    assert!(
        matches!(
            err,
            ModelError::LabelOutOfRange {
                sample: 1,
                position: 2,
                label: 7,
                vocab_size: 7
            }
        ),
        "{err}"
    );
    let err = causal_lm_loss(logits, labels(&[&[1, 2]])).expect_err("shape");
    assert!(matches!(err, ModelError::InvalidInput(_)));
}
