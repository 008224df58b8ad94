//! Warmup and decay of the learning rate, as transformers' `get_scheduler` computes them.

use serde::{Deserialize, Serialize};

use crate::LrSchedule;

/// The learning-rate multiplier of every optimizer step: linear warmup from 0, then the
/// configured decay to 0 at `total_steps` (or a constant).
///
/// Step `s` (0-based: the `s + 1`-th update) uses `lambda(s)`, exactly as transformers'
/// `LambdaLR` schedulers, which step after the optimizer: with warmup the first update has
/// a learning rate of 0. A pure function of the step, so a resumed run needs only the step
/// to continue the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// The decay after warmup.
    pub kind: LrSchedule,
    /// Steps of linear warmup.
    pub warmup_steps: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
}

impl Schedule {
    /// A schedule over `total_steps` with `warmup_steps` of warmup.
    pub fn new(kind: LrSchedule, warmup_steps: usize, total_steps: usize) -> Self {
        Self {
            kind,
            warmup_steps,
            total_steps,
        }
    }

    /// transformers' warmup: `warmup_steps` when above 0, else `ceil(ratio * total)`.
    pub fn warmup_for(warmup_steps: usize, warmup_ratio: f64, total_steps: usize) -> usize {
        if warmup_steps > 0 {
            warmup_steps
        } else {
            (warmup_ratio * total_steps as f64).ceil() as usize
        }
    }

    /// The multiplier of step `step` (0-based), in `[0, 1]`.
    pub fn factor(&self, step: usize) -> f64 {
        let (step, warmup, total) = (
            step as f64,
            self.warmup_steps as f64,
            self.total_steps as f64,
        );
        if step < warmup {
            return step / warmup.max(1.0);
        }
        let progress = ((step - warmup) / (total - warmup).max(1.0)).clamp(0.0, 1.0);
        match self.kind {
            LrSchedule::Constant => 1.0,
            LrSchedule::Linear => 1.0 - progress,
            LrSchedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay_as_transformers() {
        let cosine = Schedule::new(LrSchedule::Cosine, 2, 10);
        let factors: Vec<f64> = (0..10).map(|s| cosine.factor(s)).collect();
        assert_eq!(&factors[..3], &[0.0, 0.5, 1.0]);
        // transformers: 0.5 * (1 + cos(pi * (s - 2) / 8)).
        assert!((factors[6] - 0.5).abs() < 1e-12);
        assert!(factors.windows(2).skip(2).all(|w| w[1] < w[0]));
        let linear = Schedule::new(LrSchedule::Linear, 0, 4);
        assert_eq!(
            (0..4).map(|s| linear.factor(s)).collect::<Vec<_>>(),
            [1.0, 0.75, 0.5, 0.25]
        );
        let constant = Schedule::new(LrSchedule::Constant, 1, 4);
        assert_eq!(
            (0..4).map(|s| constant.factor(s)).collect::<Vec<_>>(),
            [0.0, 1.0, 1.0, 1.0]
        );
        assert_eq!(Schedule::warmup_for(0, 0.03, 100), 3);
        assert_eq!(Schedule::warmup_for(5, 0.03, 100), 5);
    }
}
