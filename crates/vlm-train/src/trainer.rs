//! The training loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::module::{AutodiffModule, ParamId};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;
use indicatif::{ProgressBar, ProgressStyle};
use vlm_data::Position;
use vlm_model::{CausalLmLoss, ModelError};
use vlm_rng::SplitMix64;

use crate::checkpoint::{
    latest_checkpoint, remove_stale_staging, rotate, write_checkpoint, write_synced, TrainerState,
    OPTIMIZER_DIR, TRAINABLE_FILE, TRAINER_STATE_FILE, TRAIN_CONFIG_FILE,
};
use crate::distributed::{reduce_step, share_trainable, Peer, PeerLink, StepSums};
use crate::grads::{global_norm, scale_and_split};
use crate::metrics::{plot_loss_curve, MetricsLog, MetricsRecord, LOSS_CURVE_FILE};
use crate::params::{
    apply_mode, group_ids, load_trainable, param_table, save_trainable, ParamGroup, ParamInfo,
    ADAPTER_COMPONENT, LANGUAGE_MODEL_PREFIX,
};
use crate::{
    GroupedAdamW, NonFinitePolicy, Schedule, TrainBatch, TrainConfig, TrainData, TrainError,
    TrainMode,
};

/// The loss the loop minimises: the mean cross-entropy of a batch over its supervised
/// tokens, and their count. For a `VisionLanguageModel`:
/// `|model, batch| Ok(model.forward_loss(batch.inputs, batch.labels)?.1)`.
pub type LossFn<'a, B, M> =
    Box<dyn Fn(&M, TrainBatch<B>) -> Result<CausalLmLoss<B>, ModelError> + 'a>;

/// Where a run starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Resume {
    /// From the model as given, step 0.
    #[default]
    No,
    /// From the newest complete checkpoint of the output folder (an error if there is none).
    Latest,
    /// From this checkpoint folder.
    From(PathBuf),
}

/// What happened in one optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// The step, 1-based.
    pub step: usize,
    /// Its loss: the mean over the supervised tokens of all its micro-batches; `None` when
    /// the step was skipped before the loss was known.
    pub loss: Option<f64>,
    /// Supervised tokens in the step.
    pub supervised_tokens: usize,
    /// Global gradient norm before clipping (of the token-averaged gradient).
    pub grad_norm: Option<f64>,
    /// Learning rate applied to each optimizer group (empty when skipped).
    pub learning_rates: Vec<(ParamGroup, f64)>,
    /// Why the update was skipped, if it was.
    pub skipped: Option<String>,
}

/// The result of [`Trainer::fit`].
pub struct TrainOutcome<M> {
    /// The trained model.
    pub model: M,
    /// One report per step run in this call (after the resume point).
    pub steps: Vec<StepReport>,
    /// Where the run ended.
    pub state: TrainerState,
    /// The last checkpoint written, if any.
    pub last_checkpoint: Option<PathBuf>,
    /// `metrics.jsonl`.
    pub metrics: PathBuf,
    /// `loss.png`, when the run finished and logged at least two losses.
    pub loss_curve: Option<PathBuf>,
}

type ExportFn<'a, M> = Box<dyn FnMut(&M, &Path) -> Result<(), TrainError> + 'a>;
type StepFn<'a> = Box<dyn FnMut(&StepReport) + 'a>;

/// Trains a model as configured: AdamW over the four parameter groups, gradient
/// accumulation, global-norm clipping, warmup and decay, a NaN/inf guard, logs, atomic
/// checkpoints and exact resume.
///
/// ```no_run
/// # use burn::tensor::backend::AutodiffBackend;
/// # use burn::module::AutodiffModule;
/// # use vlm_model::CausalLmLoss;
/// # use vlm_train::{Resume, TrainBatch, TrainConfig, TrainData, TrainError, Trainer};
/// # fn loss<B: AutodiffBackend, M>(_: &M, _: TrainBatch<B>) -> Result<CausalLmLoss<B>, vlm_model::ModelError> { todo!() }
/// fn run<B: AutodiffBackend, M: AutodiffModule<B>>(
///     model: M,
///     data: &mut impl TrainData<B>,
///     device: B::Device,
/// ) -> Result<M, TrainError> {
///     let config = TrainConfig::from_toml_file("train.toml")?;
///     let outcome = Trainer::new(config, device, loss)?.fit(model, data, Resume::Latest)?;
///     Ok(outcome.model)
/// }
/// ```
pub struct Trainer<'a, B: AutodiffBackend, M> {
    config: TrainConfig,
    device: B::Device,
    loss: LossFn<'a, B, M>,
    schedule: Option<Schedule>,
    export: Option<ExportFn<'a, M>>,
    on_step: Option<StepFn<'a>>,
    stop_after: Option<usize>,
    peer: Peer,
}

impl<'a, B: AutodiffBackend, M: AutodiffModule<B>> Trainer<'a, B, M> {
    /// A trainer for a validated `config`, minimising `loss` on `device`.
    pub fn new(
        config: TrainConfig,
        device: B::Device,
        loss: impl Fn(&M, TrainBatch<B>) -> Result<CausalLmLoss<B>, ModelError> + 'a,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        Ok(Self {
            config,
            device,
            loss: Box::new(loss),
            schedule: None,
            export: None,
            on_step: None,
            stop_after: None,
            peer: Peer::single(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Also writes the model in its own format into every checkpoint: `export(model, dir)`
    /// is called with the checkpoint's staging folder (e.g. to write the `vlm-model`
    /// checkpoint and the PEFT adapter there), before it is renamed into place.
    pub fn with_export(
        mut self,
        export: impl FnMut(&M, &Path) -> Result<(), TrainError> + 'a,
    ) -> Self {
        self.export = Some(Box::new(export));
        self
    }

    /// Calls `on_step` after every optimizer step.
    pub fn on_step(mut self, on_step: impl FnMut(&StepReport) + 'a) -> Self {
        self.on_step = Some(Box::new(on_step));
        self
    }

    /// Ends [`fit`](Self::fit) after this step, as an interruption would (the schedule
    /// still spans the whole run; no checkpoint is written unless one falls due).
    pub fn stop_after(mut self, step: usize) -> Self {
        self.stop_after = Some(step);
        self
    }

    /// Trains as data-parallel `peer` (see [`distributed`](crate::distributed)): `data` must
    /// serve this peer's shard, the device is the peer's; only the main peer writes
    /// checkpoints and logs.
    pub fn with_peer(mut self, peer: Peer) -> Self {
        self.peer = peer;
        self
    }

    /// Trains `model` on `data`, from the start or from a checkpoint.
    ///
    /// Applies the configured [`TrainMode`] first (what requires a gradient); then runs
    /// `max_steps` (or `num_train_epochs` worth of) optimizer steps, each over
    /// `gradient_accumulation_steps` micro-batches (fewer at the end of an epoch).
    pub fn fit(
        &mut self,
        model: M,
        data: &mut impl TrainData<B>,
        resume: Resume,
    ) -> Result<TrainOutcome<M>, TrainError> {
        let config = self.config.clone();
        let output_dir = config.output_dir.clone();
        let main = self.peer.is_main();
        if main {
            std::fs::create_dir_all(&output_dir).map_err(|e| TrainError::write(&output_dir, e))?;
            for stale in remove_stale_staging(&output_dir) {
                eprintln!(
                    "removed {}: a checkpoint whose writing was interrupted",
                    stale.display()
                );
            }
        }
        let link = if self.peer.is_distributed() {
            let device = self.device.clone();
            Some(PeerLink::<B::InnerBackend>::join(&self.peer, device)?)
        } else {
            None
        };

        let mut model = apply_mode(model, config.mode, config.train_vision);
        let mut table = param_table(&model);
        check_trainable(&table, &config)?;
        let groups = group_ids(&table);
        let mut optimizer = GroupedAdamW::<M, B>::new(&config, groups.keys().copied());

        let batches_per_epoch = data.batches_per_epoch();
        if batches_per_epoch == 0 {
            return Err(TrainError::Data("the training data has no batch".into()));
        }
        let schedule = schedule_for(&config, batches_per_epoch);
        self.schedule = Some(schedule);
        let mut state = TrainerState {
            step: 0,
            schedule,
            data: Position::start_of(0),
            batches_per_epoch,
            seed: config.seed,
            samples_seen: 0,
            tokens_seen: 0,
            images_seen: 0,
            skipped_steps: 0,
            last_loss: None,
        };

        let resume_dir = match resume {
            Resume::No => None,
            Resume::Latest => Some(latest_checkpoint(&output_dir).ok_or_else(|| {
                TrainError::checkpoint(&output_dir, "no complete checkpoint to resume from")
            })?),
            Resume::From(dir) => Some(dir),
        };
        if let Some(dir) = &resume_dir {
            let saved = TrainerState::read(dir)?;
            check_resumable(dir, &saved, &state)?;
            model = load_trainable(model, &dir.join(TRAINABLE_FILE))?;
            table = param_table(&model);
            optimizer.load(&dir.join(OPTIMIZER_DIR), &table, &self.device)?;
            state = saved;
        }
        if let Some(link) = &link {
            model = share_trainable(link, model, main)?;
        }
        data.seek(state.data)?;
        let mut metrics = if main {
            MetricsLog::open(&output_dir, resume_dir.as_ref().map(|_| state.step))?
        } else {
            MetricsLog::disabled(&output_dir)
        };
        if let Some(dir) = &resume_dir {
            metrics.write(&MetricsRecord::Resumed {
                step: state.step,
                path: dir.clone(),
            })?;
        }
        let group_of: HashMap<ParamId, ParamGroup> = table
            .iter()
            .filter(|p| p.trainable)
            .map(|p| (p.id, p.group))
            .collect();

        let total = state.schedule.total_steps;
        let end = self.stop_after.map_or(total, |s| s.min(total));
        let progress = progress_bar(&config, total, state.step, main);
        let mut run = RunClock::new(state.step);
        let mut reports = Vec::new();
        let mut last_checkpoint = None;
        let mut saved_at = None;
        let mut interval = Interval::default();

        while state.step < end {
            let step = state.step + 1;
            B::seed(&self.device, step_seed(self.peer_seed(), state.step));
            let window = next_window(
                data,
                &mut state,
                config.gradient_accumulation_steps,
                &self.device,
            )?;
            let (report, sums) = self.step(
                &mut model,
                &mut optimizer,
                &group_of,
                window,
                step,
                &mut metrics,
                link.as_ref(),
            )?;
            state.samples_seen += sums.samples as u64;
            state.tokens_seen += sums.tokens as u64;
            state.images_seen += sums.images as u64;
            interval.tokens += sums.tokens as usize;
            interval.images += sums.images as usize;
            let report = match report {
                StepResult::Done(report, next) => {
                    model = next;
                    report
                }
                StepResult::Skipped(report, next) => {
                    model = next;
                    state.skipped_steps += 1;
                    report
                }
            };
            state.step = step;
            if let Some(loss) = report.loss {
                state.last_loss = Some(loss);
                interval.losses.push(loss);
            }
            if let Some(on_step) = &mut self.on_step {
                on_step(&report);
            }
            progress.inc(1);
            if let Some(loss) = report.loss {
                progress.set_message(format!("loss {loss:.4}"));
            }

            if step.is_multiple_of(config.logging_steps) || step == total {
                let record =
                    interval.record(&report, &state, &run, config.gradient_accumulation_steps);
                if main {
                    print_log(&progress, &record, total);
                }
                metrics.write(&record)?;
                interval = Interval::default();
            }
            let due = config.save_steps > 0 && step.is_multiple_of(config.save_steps);
            if main && (due || step == total) {
                let path = self.save(&model, &optimizer, &state, &table)?;
                metrics.write(&MetricsRecord::Checkpoint {
                    step,
                    path: path.clone(),
                })?;
                last_checkpoint = Some(path);
                saved_at = Some(step);
            }
            reports.push(report);
            run.steps_done += 1;
        }
        let _ = saved_at;
        progress.finish_and_clear();
        if let Some(link) = link {
            link.leave();
        }
        let loss_curve = if main && state.step == total {
            plot_loss_curve(metrics.path(), &output_dir.join(LOSS_CURVE_FILE))?
        } else {
            None
        };
        Ok(TrainOutcome {
            model,
            steps: reports,
            state,
            last_checkpoint,
            metrics: metrics.path().to_path_buf(),
            loss_curve,
        })
    }

    /// One optimizer step over the micro-batches of `window`; with other peers, over theirs
    /// too (their gradients and counts summed in). Returns the step's (global) counts.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        model: &mut M,
        optimizer: &mut GroupedAdamW<M, B>,
        group_of: &HashMap<ParamId, ParamGroup>,
        window: Vec<TrainBatch<B>>,
        step: usize,
        metrics: &mut MetricsLog,
        link: Option<&PeerLink<B::InnerBackend>>,
    ) -> Result<(StepResult<M>, StepSums), TrainError> {
        let local = self.accumulate(model, window, step, metrics)?;
        let (grads, sums) = match link {
            Some(link) => reduce_step(link, &*model, local.grads, group_of, local.sums, step)?,
            None => (local.grads, local.sums),
        };
        let supervised = sums.supervised as usize;
        let skip = |reason: String, loss: Option<f64>, norm: Option<f64>| {
            let report = StepReport {
                step,
                loss,
                supervised_tokens: supervised,
                grad_norm: norm,
                learning_rates: Vec::new(),
                skipped: Some(reason),
            };
            Ok((StepResult::Skipped(report, model.clone()), sums))
        };
        if sums.non_finite > 0.0 {
            let value = local.non_finite.clone();
            if self.config.on_non_finite == NonFinitePolicy::Stop {
                return Err(TrainError::NonFinite {
                    what: "loss",
                    value: value.map_or("non-finite on another peer".into(), |(v, _)| v),
                    step,
                });
            }
            let reason = value.map_or_else(
                || "non-finite loss on another peer: step skipped".to_string(),
                |(_, reason)| reason,
            );
            report_skip(step, &reason, metrics)?;
            return skip(reason, None, None);
        }
        if supervised == 0 {
            let reason = format!(
                "no supervised token in any of the {} micro-batches: step skipped",
                local.micro_batches
            );
            report_skip(step, &reason, metrics)?;
            return skip(reason, None, None);
        }
        let loss = sums.loss_sum / sums.supervised;
        let scale = 1.0 / sums.supervised;
        let norm = global_norm(&*model, &grads, scale);
        if !norm.is_finite() {
            if self.config.on_non_finite == NonFinitePolicy::Stop {
                return Err(TrainError::NonFinite {
                    what: "gradient norm",
                    value: norm.to_string(),
                    step,
                });
            }
            let reason = format!("non-finite gradient norm {norm}: step skipped");
            report_skip(step, &reason, metrics)?;
            return skip(reason, Some(loss), Some(norm));
        }
        let max_norm = self.config.max_grad_norm;
        let clip = if max_norm > 0.0 {
            (max_norm / (norm + 1e-6)).min(1.0)
        } else {
            1.0
        };
        let split = scale_and_split(&*model, grads, scale * clip, group_of);
        let factor = self.schedule_factor(step - 1);
        let (next, learning_rates) = optimizer.step(model.clone(), split, factor);
        let report = StepReport {
            step,
            loss: Some(loss),
            supervised_tokens: supervised,
            grad_norm: Some(norm),
            learning_rates,
            skipped: None,
        };
        Ok((StepResult::Done(report, next), sums))
    }

    /// This peer's part of a step: the gradients of the summed loss (loss times supervised
    /// tokens) of the micro-batches of `window`, accumulated, and the step's counts. Stops at
    /// a non-finite loss (the step will be skipped or the run stopped).
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
        for (index, batch) in window.into_iter().enumerate() {
            if batch.supervised_tokens == 0 {
                let reason = format!(
                    "micro-batch {} of {micro_batches} has no supervised token (every label is \
                     -100): left out of the step",
                    index + 1
                );
                report_skip(step, &reason, metrics)?;
                continue;
            }
            let loss = (self.loss)(model, batch)?;
            let value: f64 = loss.loss.clone().into_scalar().elem();
            if !value.is_finite() {
                let reason = format!(
                    "non-finite loss {value} in micro-batch {} of {micro_batches}: step skipped",
                    index + 1
                );
                sums.non_finite = 1.0;
                return Ok(LocalStep {
                    grads: accumulator.grads(),
                    sums,
                    micro_batches,
                    non_finite: Some((value.to_string(), reason)),
                });
            }
            let count = loss.supervised_tokens;
            // Back-propagate the summed loss; the sum over the step is divided by the step's
            // supervised-token count afterwards, which is the exact token mean of all of them.
            let grads = loss.loss.mul_scalar(count as f64).backward();
            accumulator.accumulate(model, GradientsParams::from_grads(grads, model));
            sums.loss_sum += value * count as f64;
            sums.supervised += count as f64;
        }
        Ok(LocalStep {
            grads: accumulator.grads(),
            sums,
            micro_batches,
            non_finite: None,
        })
    }

    /// The seed of this peer's random draws (dropout): the run's seed on the main peer,
    /// another one, fixed by the rank, on each other peer.
    fn peer_seed(&self) -> u64 {
        let rank = self.peer.rank as u64;
        self.config.seed ^ rank.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    fn schedule_factor(&self, step: usize) -> f64 {
        self.schedule.map_or(1.0, |s| s.factor(step))
    }

    /// Writes checkpoint `state.step` and rotates the old ones.
    fn save(
        &mut self,
        model: &M,
        optimizer: &GroupedAdamW<M, B>,
        state: &TrainerState,
        table: &[ParamInfo],
    ) -> Result<PathBuf, TrainError> {
        let output_dir = self.config.output_dir.clone();
        let config_toml = self.config.to_toml_string();
        let export = &mut self.export;
        let path = write_checkpoint(&output_dir, state.step, |dir| {
            let json = serde_json::to_vec_pretty(state).expect("state serialises");
            write_synced(&dir.join(TRAINER_STATE_FILE), &json)?;
            write_synced(&dir.join(TRAIN_CONFIG_FILE), config_toml.as_bytes())?;
            save_trainable(model, &dir.join(TRAINABLE_FILE))?;
            optimizer.save(&dir.join(OPTIMIZER_DIR), table)?;
            if let Some(export) = export {
                export(model, dir)?;
            }
            Ok(())
        })?;
        if let Some(limit) = self.config.save_total_limit {
            rotate(&output_dir, limit, &path)?;
        }
        Ok(path)
    }
}

enum StepResult<M> {
    Done(StepReport, M),
    Skipped(StepReport, M),
}

/// One peer's part of a step, before the peers' parts are summed.
struct LocalStep {
    grads: GradientsParams,
    sums: StepSums,
    micro_batches: usize,
    /// The non-finite loss met, as text, and the reason to report.
    non_finite: Option<(String, String)>,
}

/// Reports a skipped step (or micro-batch) on stderr and in the metrics.
fn report_skip(step: usize, reason: &str, metrics: &mut MetricsLog) -> Result<(), TrainError> {
    eprintln!("step {step}: {reason}");
    metrics.write(&MetricsRecord::Skipped {
        step,
        reason: reason.to_string(),
    })
}

/// The micro-batches of one step: up to `count`, fewer when the epoch ends (the next step
/// starts the next epoch, as transformers' `Trainer` does).
fn next_window<B: AutodiffBackend>(
    data: &mut impl TrainData<B>,
    state: &mut TrainerState,
    count: usize,
    device: &B::Device,
) -> Result<Vec<TrainBatch<B>>, TrainError> {
    let mut window = Vec::with_capacity(count);
    let mut empty_epochs = 0;
    while window.len() < count {
        match data.next_batch(device)? {
            Some(batch) => {
                window.push(batch);
                state.data = data.position();
            }
            None => {
                let next = Position::start_of(state.data.epoch + 1);
                data.seek(next)?;
                state.data = next;
                if !window.is_empty() {
                    break;
                }
                empty_epochs += 1;
                if empty_epochs > 1 {
                    return Err(TrainError::Data(
                        "an epoch of the training data has no batch".into(),
                    ));
                }
            }
        }
    }
    Ok(window)
}

/// The schedule of a run: `max_steps`, or `ceil(epochs * ceil(batches / accumulation))`.
pub fn schedule_for(config: &TrainConfig, batches_per_epoch: usize) -> Schedule {
    let steps_per_epoch = batches_per_epoch.div_ceil(config.gradient_accumulation_steps);
    let total = config.max_steps.unwrap_or_else(|| {
        ((config.num_train_epochs * steps_per_epoch as f64).ceil() as usize).max(1)
    });
    let warmup = Schedule::warmup_for(config.warmup_steps, config.warmup_ratio, total);
    Schedule::new(
        config.lr_scheduler_type,
        warmup.min(total.saturating_sub(1)),
        total,
    )
}

/// The backend generator's seed for step `step` (0-based).
fn step_seed(seed: u64, step: usize) -> u64 {
    SplitMix64::new(seed ^ (step as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
}

fn check_trainable(table: &[ParamInfo], config: &TrainConfig) -> Result<(), TrainError> {
    if !table.iter().any(|p| p.trainable) {
        return Err(TrainError::NothingToTrain(format!(
            "no parameter trains in mode {:?}; the loop trains the `projector`, `language_model` \
             and `vision` parts of a VisionLanguageModel",
            config.mode
        )));
    }
    if config.mode == TrainMode::Lora {
        let adapters = table.iter().any(|p| {
            p.trainable
                && p.path.starts_with(LANGUAGE_MODEL_PREFIX)
                && p.path.split('.').any(|c| c == ADAPTER_COMPONENT)
        });
        if !adapters {
            return Err(TrainError::NothingToTrain(
                "mode lora, but the language model carries no LoRA adapter: attach adapters \
                 (vlm_lora::apply) before training, or use mode projector / full"
                    .into(),
            ));
        }
    }
    Ok(())
}

fn check_resumable(
    dir: &Path,
    saved: &TrainerState,
    fresh: &TrainerState,
) -> Result<(), TrainError> {
    if saved.seed != fresh.seed {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "was trained with seed {}, this run has seed {}: the data order would differ",
                saved.seed, fresh.seed
            ),
        ));
    }
    if saved.batches_per_epoch != fresh.batches_per_epoch {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "was trained on {} micro-batches per epoch, this data has {} (resuming on \
                 another device count needs the same global batch: peers x \
                 per_device_train_batch_size)",
                saved.batches_per_epoch, fresh.batches_per_epoch
            ),
        ));
    }
    if saved.schedule != fresh.schedule {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "was trained on schedule {:?}, this run's is {:?} (check max_steps, epochs, \
                 warmup, gradient accumulation)",
                saved.schedule, fresh.schedule
            ),
        ));
    }
    if saved.step > saved.schedule.total_steps {
        return Err(TrainError::checkpoint(
            dir,
            "its step is past the end of its schedule",
        ));
    }
    Ok(())
}

fn progress_bar(config: &TrainConfig, total: usize, position: usize, main: bool) -> ProgressBar {
    if config.disable_progress_bar || !main {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps, eta {eta} {msg}",
    )
    .expect("valid template");
    bar.set_style(style);
    bar.set_position(position as u64);
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn print_log(progress: &ProgressBar, record: &MetricsRecord, total: usize) {
    let MetricsRecord::Log {
        step,
        epoch,
        loss,
        lr,
        grad_norm,
        tokens_per_s,
        images_per_s,
        eta_s,
    } = record
    else {
        return;
    };
    let lrs: Vec<String> = lr.iter().map(|(g, v)| format!("{g} {v:.2e}")).collect();
    let line = format!(
        "step {step}/{total} | epoch {epoch:.2} | loss {} | lr {} | grad_norm {} | {tokens_per_s:.0} tok/s {images_per_s:.1} img/s | eta {}",
        loss.map_or("-".into(), |l| format!("{l:.4}")),
        lrs.join(", "),
        grad_norm.map_or("-".into(), |n| format!("{n:.3}")),
        format_duration(*eta_s),
    );
    if progress.is_hidden() {
        eprintln!("{line}");
    } else {
        progress.println(line);
    }
}

fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

struct RunClock {
    start: Instant,
    steps_done: usize,
}

impl RunClock {
    fn new(_first_step: usize) -> Self {
        Self {
            start: Instant::now(),
            steps_done: 0,
        }
    }
}

struct Interval {
    start: Instant,
    losses: Vec<f64>,
    tokens: usize,
    images: usize,
}

impl Default for Interval {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            losses: Vec::new(),
            tokens: 0,
            images: 0,
        }
    }
}

impl Interval {
    fn record(
        &self,
        report: &StepReport,
        state: &TrainerState,
        run: &RunClock,
        accumulation: usize,
    ) -> MetricsRecord {
        let seconds = self.start.elapsed().as_secs_f64().max(1e-9);
        let per_step = run.start.elapsed().as_secs_f64() / (run.steps_done + 1) as f64;
        let total = state.schedule.total_steps;
        // Epochs done, from the steps: exact when the epoch is a whole number of steps.
        let steps_per_epoch = state.batches_per_epoch.div_ceil(accumulation).max(1);
        let epoch = report.step as f64 / steps_per_epoch as f64;
        MetricsRecord::Log {
            step: report.step,
            epoch,
            loss: (!self.losses.is_empty())
                .then(|| self.losses.iter().sum::<f64>() / self.losses.len() as f64),
            lr: report
                .learning_rates
                .iter()
                .map(|(g, lr)| (g.name().to_string(), *lr))
                .collect(),
            grad_norm: report.grad_norm,
            tokens_per_s: self.tokens as f64 / seconds,
            images_per_s: self.images as f64 / seconds,
            eta_s: per_step * total.saturating_sub(report.step) as f64,
        }
    }
}
