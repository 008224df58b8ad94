//! The training loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use burn::module::{AutodiffModule, ParamId};
use burn::tensor::backend::AutodiffBackend;
use vlm_data::Position;
use vlm_model::{CausalLmLoss, ModelError, RoleModel};
use vlm_rng::SplitMix64;

use crate::checkpoint::{
    latest_checkpoint, remove_stale_staging, rotate, write_checkpoint, write_synced, TrainerState,
    OPTIMIZER_DIR, TRAINABLE_FILE, TRAINER_STATE_FILE, TRAIN_CONFIG_FILE,
};
use crate::distributed::{share_trainable, Peer, PeerLink, StepSums};
use crate::metrics::{plot_loss_curve, MetricsLog, MetricsRecord, LOSS_CURVE_FILE};
use crate::params::{
    apply_mode, group_ids, load_trainable, param_table, save_trainable, ParamGroup, ParamInfo,
};
use crate::run_dir::claim_output_dir;
use crate::{GroupedAdamW, Schedule, TrainBatch, TrainConfig, TrainData, TrainError};

mod checks;
mod log;
mod step;

use checks::{check_resumable, check_trainable};
use log::StepLog;

/// The loss the loop minimises: the mean cross-entropy of a batch over its supervised
/// tokens, and their count. For a `VisionLanguageModel`:
/// `|model, batch| model.forward_loss(batch.inputs, batch.labels)`.
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
    /// Whether the run stopped early on its stop flag ([`Trainer::with_stop`]), after writing
    /// `last_checkpoint` at the step it stopped at.
    pub interrupted: bool,
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
/// # use vlm_model::{CausalLmLoss, RoleModel};
/// # use vlm_train::{Resume, TrainBatch, TrainConfig, TrainData, TrainError, Trainer};
/// # fn loss<B: AutodiffBackend, M>(_: &M, _: TrainBatch<B>) -> Result<CausalLmLoss<B>, vlm_model::ModelError> { todo!() }
/// fn run<B: AutodiffBackend, M: AutodiffModule<B> + RoleModel<B>>(
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
    stop: Option<Arc<AtomicBool>>,
    peer: Peer,
}

impl<'a, B: AutodiffBackend, M: AutodiffModule<B> + RoleModel<B>> Trainer<'a, B, M> {
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
            stop: None,
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

    /// Ends [`fit`](Self::fit) after this step, as a crash would (the schedule still spans
    /// the whole run; no checkpoint is written unless one falls due).
    pub fn stop_after(mut self, step: usize) -> Self {
        self.stop_after = Some(step);
        self
    }

    /// Stops [`fit`](Self::fit) early when `stop` is set (e.g. by a SIGINT / SIGTERM
    /// handler): the step in progress completes, a checkpoint of it is written, and the
    /// outcome says [`interrupted`](TrainOutcome::interrupted). The flag is read once per
    /// step, after its micro-batches' backward passes; data-parallel peers stop together
    /// after the step in which any of them saw it set.
    pub fn with_stop(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = Some(stop);
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
    ///
    /// On Linux with glibc, the process keeps freed memory in its heap from the first call on
    /// (no trimming; a step no longer faults its buffers back in; see `heap.rs`).
    pub fn fit(
        &mut self,
        model: M,
        data: &mut impl TrainData<B>,
        resume: Resume,
    ) -> Result<TrainOutcome<M>, TrainError> {
        crate::heap::retain_freed_memory();
        let (run_id, resume_dir) = match self.peer.is_main() {
            true => prepare_output_dir(&self.config, resume)?,
            false => (String::new(), resume_dir(resume, &self.config.output_dir)?),
        };
        let link = match self.peer.is_distributed() {
            true => Some(PeerLink::join(&self.peer, self.device.clone())?),
            false => None,
        };
        let mut run = self.start(model, data, resume_dir, link)?;
        run.state.run_id = run_id;
        let (steps, last_checkpoint, interrupted) = self.run_steps(&mut run, data)?;
        if let Some(link) = run.link {
            link.leave();
        }
        let loss_curve = if self.peer.is_main() && run.state.step == run.state.schedule.total_steps
        {
            let output = self.config.output_dir.join(LOSS_CURVE_FILE);
            plot_loss_curve(run.metrics.path(), &output)?
        } else {
            None
        };
        Ok(TrainOutcome {
            model: run.model,
            steps,
            state: run.state,
            last_checkpoint,
            metrics: run.metrics.path().to_path_buf(),
            loss_curve,
            interrupted,
        })
    }

    /// The run at its first step: the mode applied, the optimizer built, and, when resuming,
    /// the trainable values, optimizer state and position of the checkpoint restored.
    fn start(
        &mut self,
        model: M,
        data: &mut impl TrainData<B>,
        resume_dir: Option<PathBuf>,
        link: Option<PeerLink<B::InnerBackend>>,
    ) -> Result<Run<B, M>, TrainError> {
        let config = self.config.clone();
        let mut model = apply_mode(model, &config);
        let mut table = param_table(&model);
        check_trainable(&table, &config)?;
        let mut optimizer = GroupedAdamW::<M, B>::new(&config, group_ids(&table).keys().copied());
        let mut state = self.fresh_state(data.batches_per_epoch())?;
        if let Some(dir) = &resume_dir {
            let saved = TrainerState::read(dir)?;
            check_resumable(dir, &saved, &state)?;
            if self.peer.is_main() {
                eprintln!(
                    "{}",
                    resume_line(dir, &saved, config.gradient_accumulation_steps)
                );
            }
            model = load_trainable(model, &dir.join(TRAINABLE_FILE))?;
            table = param_table(&model);
            optimizer.load(&dir.join(OPTIMIZER_DIR), &table, &self.device)?;
            state = TrainerState {
                schedule: state.schedule,
                ..saved
            };
        }
        if let Some(link) = &link {
            model = share_trainable(link, model, self.peer.is_main())?;
        }
        data.seek(state.data)?;
        let metrics = self.open_metrics(resume_dir.as_deref(), state.step)?;
        let group_of = table
            .iter()
            .filter(|p| p.trainable)
            .map(|p| (p.id, p.group))
            .collect();
        Ok(Run {
            model,
            optimizer,
            table,
            group_of,
            state,
            metrics,
            link,
        })
    }

    /// The state of a run at step 0 over `batches_per_epoch` micro-batches per epoch; sets
    /// the run's schedule.
    fn fresh_state(&mut self, batches_per_epoch: usize) -> Result<TrainerState, TrainError> {
        if batches_per_epoch == 0 {
            return Err(TrainError::Data("the training data has no batch".into()));
        }
        let schedule = schedule_for(&self.config, batches_per_epoch);
        self.schedule = Some(schedule);
        Ok(TrainerState {
            run_id: String::new(),
            step: 0,
            schedule,
            data: Position::start_of(0),
            batches_per_epoch,
            seed: self.config.seed,
            samples_seen: 0,
            tokens_seen: 0,
            images_seen: 0,
            skipped_steps: 0,
            last_loss: None,
        })
    }

    /// `metrics.jsonl` (on the main peer), continued from `step` when resuming from `resumed`.
    fn open_metrics(&self, resumed: Option<&Path>, step: usize) -> Result<MetricsLog, TrainError> {
        let output_dir = &self.config.output_dir;
        if !self.peer.is_main() {
            return Ok(MetricsLog::disabled(output_dir));
        }
        let mut metrics = MetricsLog::open(output_dir, resumed.map(|_| step))?;
        if let Some(dir) = resumed {
            let path = dir.to_path_buf();
            metrics.write(&MetricsRecord::Resumed { step, path });
        }
        match metrics.take_failure() {
            Some(failure) => Err(failure),
            None => Ok(metrics),
        }
    }

    /// Runs steps until the schedule ends (or [`stop_after`](Self::stop_after), or the stop
    /// flag), logging and checkpointing as they fall due. A step that asked to stop, or whose
    /// metrics could not be written, is checkpointed, then the run ends (with the metrics
    /// failure as its error). Returns the steps' reports, the last checkpoint and whether the
    /// stop flag ended the run.
    fn run_steps(
        &mut self,
        run: &mut Run<B, M>,
        data: &mut impl TrainData<B>,
    ) -> Result<(Vec<StepReport>, Option<PathBuf>, bool), TrainError> {
        let total = run.state.schedule.total_steps;
        let end = self.stop_after.map_or(total, |s| s.min(total));
        let main = self.peer.is_main();
        let mut log = StepLog::new(&self.config, total, run.state.step, main);
        let mut reports = Vec::new();
        let mut last_checkpoint = None;
        let mut interrupted = false;
        while run.state.step < end && !interrupted {
            let (report, sums) = self.train_step(run, data)?;
            if let Some(on_step) = &mut self.on_step {
                on_step(&report);
            }
            log.step(&report, &sums, &run.state, &mut run.metrics);
            interrupted = sums.stop_requests > 0.0 && report.step < total;
            let due =
                self.config.save_steps > 0 && report.step.is_multiple_of(self.config.save_steps);
            let failure = run.metrics.take_failure();
            if main && (due || report.step == total || interrupted || failure.is_some()) {
                let written = self.checkpoint(run);
                if let Some(failure) = failure.or_else(|| run.metrics.take_failure()) {
                    log.finish();
                    return Err(TrainError::metrics_failed(failure, written));
                }
                last_checkpoint = Some(written?);
            }
            reports.push(report);
        }
        log.finish();
        Ok((reports, last_checkpoint, interrupted))
    }

    /// Whether the stop flag is set.
    fn stop_requested(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    /// The next step: its micro-batches read, the model updated (unless skipped) and the
    /// run's state moved past it. Returns its report and (global) counts.
    fn train_step(
        &mut self,
        run: &mut Run<B, M>,
        data: &mut impl TrainData<B>,
    ) -> Result<(StepReport, StepSums), TrainError> {
        let step = run.state.step + 1;
        B::seed(&self.device, step_seed(self.peer_seed(), run.state.step));
        let accumulation = self.config.gradient_accumulation_steps;
        let window = next_window(data, &mut run.state, accumulation, &self.device)?;
        let (report, sums) = self.step(run, window, step)?;
        let state = &mut run.state;
        state.samples_seen += sums.samples as u64;
        state.tokens_seen += sums.tokens as u64;
        state.images_seen += sums.images as u64;
        if report.skipped.is_some() {
            state.skipped_steps += 1;
        }
        state.step = step;
        if let Some(loss) = report.loss {
            state.last_loss = Some(loss);
        }
        Ok((report, sums))
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

    /// Writes checkpoint `run.state.step`, records it in the metrics and rotates the old
    /// ones. Returns its folder.
    fn checkpoint(&mut self, run: &mut Run<B, M>) -> Result<PathBuf, TrainError> {
        let output_dir = self.config.output_dir.clone();
        let config_toml = self.config.to_toml_string();
        let export = &mut self.export;
        let Run {
            model,
            optimizer,
            table,
            state,
            ..
        } = &*run;
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
        let step = run.state.step;
        run.metrics.write(&MetricsRecord::Checkpoint {
            step,
            path: path.clone(),
        });
        Ok(path)
    }
}

/// A run in progress: the model and what moves with it from step to step.
struct Run<B: AutodiffBackend, M: AutodiffModule<B>> {
    model: M,
    optimizer: GroupedAdamW<M, B>,
    /// Every parameter, by path (what checkpoints key the optimizer state by).
    table: Vec<ParamInfo>,
    /// The optimizer group of each trainable parameter.
    group_of: HashMap<ParamId, ParamGroup>,
    state: TrainerState,
    metrics: MetricsLog,
    /// The other peers, in a data-parallel run.
    link: Option<PeerLink<B::InnerBackend>>,
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

/// Creates the output folder, removes the staging folders of interrupted checkpoints and
/// claims the folder for the run (see [`run_dir`](crate::run_dir)). Returns the run's id and
/// the checkpoint to resume from.
fn prepare_output_dir(
    config: &TrainConfig,
    resume: Resume,
) -> Result<(String, Option<PathBuf>), TrainError> {
    let output_dir = &config.output_dir;
    std::fs::create_dir_all(output_dir).map_err(|e| TrainError::write(output_dir, e))?;
    for stale in remove_stale_staging(output_dir) {
        eprintln!(
            "removed {}: a checkpoint whose writing was interrupted",
            stale.display()
        );
    }
    claim_output_dir(output_dir, resume, config.overwrite_output_dir)
}

/// `resuming from checkpoint-N (step S, epoch E, samples seen K)`.
fn resume_line(dir: &Path, saved: &TrainerState, accumulation: usize) -> String {
    let name = dir.file_name().unwrap_or(dir.as_os_str()).to_string_lossy();
    format!(
        "resuming from {name} (step {}, epoch {:.2}, samples seen {})",
        saved.step,
        saved.epochs_done(accumulation),
        saved.samples_seen
    )
}

/// The checkpoint folder a run resumes from, if any.
fn resume_dir(resume: Resume, output_dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    Ok(match resume {
        Resume::No => None,
        Resume::Latest => Some(latest_checkpoint(output_dir).ok_or_else(|| {
            TrainError::checkpoint(output_dir, "no complete checkpoint to resume from")
        })?),
        Resume::From(dir) => Some(dir),
    })
}
