//! What a run shows and logs after each step: the progress bar, the console line and the
//! `metrics.jsonl` records of every `logging_steps` interval.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::TrainerState;
use crate::distributed::StepSums;
use crate::metrics::{MetricsLog, MetricsRecord};
use crate::trainer::StepReport;
use crate::TrainConfig;

/// The progress bar and the interval being measured since the last log line.
pub(super) struct StepLog {
    progress: ProgressBar,
    /// Only the main peer prints.
    main: bool,
    logging_steps: usize,
    accumulation: usize,
    /// When this call's first step started, for the remaining-time estimate.
    start: Instant,
    /// Steps run in this call.
    steps_done: usize,
    interval: Interval,
}

impl StepLog {
    /// A log for a run at step `position` of `total`.
    pub(super) fn new(config: &TrainConfig, total: usize, position: usize, main: bool) -> Self {
        Self {
            progress: progress_bar(config, total, position, main),
            main,
            logging_steps: config.logging_steps,
            accumulation: config.gradient_accumulation_steps,
            start: Instant::now(),
            steps_done: 0,
            interval: Interval::default(),
        }
    }

    /// Counts a finished step (`state` already past it) and, every `logging_steps` and at
    /// the last step, prints the interval's line and writes its record.
    pub(super) fn step(
        &mut self,
        report: &StepReport,
        sums: &StepSums,
        state: &TrainerState,
        metrics: &mut MetricsLog,
    ) {
        self.interval.add(report, sums);
        self.progress.inc(1);
        if let Some(loss) = report.loss {
            self.progress.set_message(format!("loss {loss:.4}"));
        }
        let total = state.schedule.total_steps;
        if report.step.is_multiple_of(self.logging_steps) || report.step == total {
            let record = self.record(report, state);
            if self.main {
                print_log(&self.progress, &record, total);
            }
            metrics.write(&record);
            self.interval = Interval::default();
        }
        self.steps_done += 1;
    }

    /// Clears the progress bar.
    pub(super) fn finish(&self) {
        self.progress.finish_and_clear();
    }

    /// The log record of the interval ending with `report`.
    fn record(&self, report: &StepReport, state: &TrainerState) -> MetricsRecord {
        let interval = &self.interval;
        let seconds = interval.start.elapsed().as_secs_f64().max(1e-9);
        let per_step = self.start.elapsed().as_secs_f64() / (self.steps_done + 1) as f64;
        let total = state.schedule.total_steps;
        let epoch = state.epochs_done(self.accumulation);
        MetricsRecord::Log {
            step: report.step,
            epoch,
            loss: (!interval.losses.is_empty())
                .then(|| interval.losses.iter().sum::<f64>() / interval.losses.len() as f64),
            lr: report
                .learning_rates
                .iter()
                .map(|(g, lr)| (g.name().to_string(), *lr))
                .collect(),
            grad_norm: report.grad_norm,
            tokens_per_s: interval.tokens as f64 / seconds,
            images_per_s: interval.images as f64 / seconds,
            eta_s: per_step * total.saturating_sub(report.step) as f64,
        }
    }
}

/// The steps since the last log line: their losses and throughput.
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
    fn add(&mut self, report: &StepReport, sums: &StepSums) {
        self.tokens += sums.tokens as usize;
        self.images += sums.images as usize;
        if let Some(loss) = report.loss {
            self.losses.push(loss);
        }
    }
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
