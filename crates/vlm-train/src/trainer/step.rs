//! One optimizer step: the micro-batches' gradients accumulated, the peers' summed, the
//! non-finite guard, clipping and the update.

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use vlm_model::RoleModel;

use crate::distributed::{reduce_step, StepSums};
use crate::grads::{global_norm, scale_and_split};
use crate::metrics::{MetricsLog, MetricsRecord};
use crate::trainer::{Run, StepReport, Trainer};
use crate::{NonFinitePolicy, TrainBatch, TrainError};

impl<B: AutodiffBackend, M: AutodiffModule<B> + RoleModel<B>> Trainer<'_, B, M> {
    /// One optimizer step over the micro-batches of `window`; with other peers, over theirs
    /// too (their gradients and counts summed in). Updates `run.model` unless the step is
    /// skipped; returns the step's report and (global) counts.
    pub(super) fn step(
        &mut self,
        run: &mut Run<B, M>,
        window: Vec<TrainBatch<B>>,
        step: usize,
    ) -> Result<(StepReport, StepSums), TrainError> {
        let mut local = self.accumulate(&run.model, window, step, &mut run.metrics)?;
        local.sums.stop_requests = f64::from(u8::from(self.stop_requested()));
        let (grads, sums) = match &run.link {
            Some(link) => reduce_step(
                link,
                &run.model,
                local.grads,
                &run.group_of,
                local.sums,
                step,
            )?,
            None => (local.grads, local.sums),
        };
        let skipped = |reason: String, loss: Option<f64>, grad_norm: Option<f64>| StepReport {
            step,
            loss,
            supervised_tokens: sums.supervised as usize,
            grad_norm,
            learning_rates: Vec::new(),
            skipped: Some(reason),
        };
        if sums.non_finite > 0.0 {
            let reason = self.non_finite_loss(local.non_finite, step)?;
            report_skip(step, &reason, &mut run.metrics);
            return Ok((skipped(reason, None, None), sums));
        }
        if sums.supervised as usize == 0 {
            let reason = format!(
                "no supervised token in any of the {} micro-batches: step skipped",
                local.micro_batches
            );
            report_skip(step, &reason, &mut run.metrics);
            return Ok((skipped(reason, None, None), sums));
        }
        let loss = sums.loss_sum / sums.supervised;
        let scale = 1.0 / sums.supervised;
        let norm = global_norm(&run.model, &grads, scale);
        if !norm.is_finite() {
            let reason = self.non_finite_norm(norm, step)?;
            report_skip(step, &reason, &mut run.metrics);
            return Ok((skipped(reason, Some(loss), Some(norm)), sums));
        }
        let clip = self.clip_factor(norm);
        let split = scale_and_split(&run.model, grads, scale * clip, &run.group_of);
        let factor = self.schedule_factor(step - 1);
        let (next, learning_rates) = run.optimizer.step(run.model.clone(), split, factor);
        run.model = next;
        let report = StepReport {
            step,
            loss: Some(loss),
            supervised_tokens: sums.supervised as usize,
            grad_norm: Some(norm),
            learning_rates,
            skipped: None,
        };
        Ok((report, sums))
    }

    /// Why a step with a non-finite loss (`local`: this peer's, as text, and its reason) is
    /// skipped, or the error that stops the run under [`NonFinitePolicy::Stop`].
    fn non_finite_loss(
        &self,
        local: Option<(String, String)>,
        step: usize,
    ) -> Result<String, TrainError> {
        if self.config.on_non_finite == NonFinitePolicy::Stop {
            return Err(TrainError::NonFinite {
                what: "loss",
                value: local.map_or("non-finite on another peer".into(), |(v, _)| v),
                step,
            });
        }
        Ok(local.map_or_else(
            || "non-finite loss on another peer: step skipped".to_string(),
            |(_, reason)| reason,
        ))
    }

    /// Why a step with a non-finite gradient norm is skipped, or the error that stops the run.
    fn non_finite_norm(&self, norm: f64, step: usize) -> Result<String, TrainError> {
        if self.config.on_non_finite == NonFinitePolicy::Stop {
            return Err(TrainError::NonFinite {
                what: "gradient norm",
                value: norm.to_string(),
                step,
            });
        }
        Ok(format!("non-finite gradient norm {norm}: step skipped"))
    }

    /// The factor bringing a gradient of global norm `norm` within `max_grad_norm`.
    fn clip_factor(&self, norm: f64) -> f64 {
        let max_norm = self.config.max_grad_norm;
        if max_norm > 0.0 {
            (max_norm / (norm + 1e-6)).min(1.0)
        } else {
            1.0
        }
    }

    /// This peer's part of a step: the gradients of the summed loss (loss times supervised
    /// tokens) of the micro-batches of `window`, accumulated, and the step's counts. The
    /// losses are read back once, after the last micro-batch; the counts stop at the first
    /// non-finite one (the step will be skipped or the run stopped).
    fn accumulate(
        &self,
        model: &M,
        window: Vec<TrainBatch<B>>,
        step: usize,
        metrics: &mut MetricsLog,
    ) -> Result<LocalStep, TrainError> {
        let micro_batches = window.len();
        let mut accumulator = GradientsAccumulator::<M>::new();
        let mut sums = StepSums::default();
        for batch in &window {
            sums.samples += batch.samples as f64;
            sums.tokens += batch.tokens as f64;
            sums.images += batch.images as f64;
        }
        let mut losses = Vec::with_capacity(micro_batches);
        for batch in window {
            if batch.supervised_tokens == 0 {
                losses.push(None);
                continue;
            }
            let loss = (self.loss)(model, batch)?;
            let count = loss.supervised_tokens;
            // Back-propagate the summed loss; the sum over the step is divided by the step's
            // supervised-token count afterwards, which is the exact token mean of all of them.
            let grads = loss.loss.clone().mul_scalar(count as f64).backward();
            accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
            losses.push(Some((loss.loss.inner(), count)));
        }
        let non_finite = self.add_losses(&mut sums, losses, step, metrics);
        Ok(LocalStep {
            grads: accumulator.grads(),
            sums,
            micro_batches,
            non_finite,
        })
    }

    /// Adds the micro-batches' losses (`None`: left out, no supervised token) to `sums`, in
    /// order, reporting those left out; stops at the first non-finite loss and returns it, as
    /// text, with the reason to report.
    fn add_losses(
        &self,
        sums: &mut StepSums,
        losses: Vec<Option<(Tensor<B::InnerBackend, 1>, usize)>>,
        step: usize,
        metrics: &mut MetricsLog,
    ) -> Option<(String, String)> {
        let micro_batches = losses.len();
        let values = read_losses(losses.iter().flatten().map(|(loss, _)| loss.clone()));
        let mut values = values.into_iter();
        for (index, loss) in losses.iter().enumerate() {
            let Some((_, count)) = loss else {
                let reason = format!(
                    "micro-batch {} of {micro_batches} has no supervised token (every label is \
                     -100): left out of the step",
                    index + 1
                );
                report_skip(step, &reason, metrics);
                continue;
            };
            let value = values.next().unwrap_or(f64::NAN);
            if !value.is_finite() {
                let reason = format!(
                    "non-finite loss {value} in micro-batch {} of {micro_batches}: step skipped",
                    index + 1
                );
                sums.non_finite = 1.0;
                return Some((value.to_string(), reason));
            }
            sums.loss_sum += value * *count as f64;
            sums.supervised += *count as f64;
        }
        None
    }
}

/// One peer's part of a step, before the peers' parts are summed.
struct LocalStep {
    grads: GradientsParams,
    sums: StepSums,
    micro_batches: usize,
    /// The non-finite loss met, as text, and the reason to report.
    non_finite: Option<(String, String)>,
}

/// The values of `losses` (`[1]` each), read back to the host in one transfer.
fn read_losses<B: Backend>(losses: impl Iterator<Item = Tensor<B, 1>>) -> Vec<f64> {
    let losses: Vec<Tensor<B, 1>> = losses.collect();
    if losses.is_empty() {
        return Vec::new();
    }
    Tensor::cat(losses, 0).into_data().iter::<f64>().collect()
}

/// Reports a skipped step (or micro-batch) on stderr and in the metrics.
pub(super) fn report_skip(step: usize, reason: &str, metrics: &mut MetricsLog) {
    eprintln!("step {step}: {reason}");
    metrics.write(&MetricsRecord::Skipped {
        step,
        reason: reason.to_string(),
    });
}
