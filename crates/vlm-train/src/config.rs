//! The training configuration: a TOML file, command-line flags that override it (spelt as the
//! seed's `train.sh` passes them to transformers' `TrainingArguments`), and validation.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vlm_hf::Precision;
use vlm_lora::{LoraConfig, TargetModules};
use vlm_model::Role;
use vlm_qwen::QwenVariant;

use crate::{default_target_modules, trains, ConfigError, TrainError};

/// What training updates; the vision tower stays frozen unless
/// [`train_vision`](TrainConfig::train_vision) is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TrainMode {
    /// The projector alone (LLaVA stage 1, feature alignment).
    Projector,
    /// The projector and LoRA adapters on the language model (the seed's recipe); the
    /// language model's base weights stay frozen.
    Lora,
    /// The projector and every parameter of the language model.
    Full,
}

/// How the learning rate decays after warmup (transformers' `lr_scheduler_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// Half a cosine from the peak to 0 at the last step.
    Cosine,
    /// A straight line from the peak to 0 at the last step.
    Linear,
    /// The peak throughout (after warmup).
    Constant,
}

/// What a NaN or infinite loss or gradient norm does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NonFinitePolicy {
    /// Report it with the step and skip that optimizer step (no update, moments unchanged).
    Skip,
    /// Report it and stop the run with [`TrainError::NonFinite`].
    Stop,
}

/// Every setting of a training run.
///
/// Names are those of transformers' `TrainingArguments` and the seed's `train.sh` in the TOML
/// file. Defaults follow LLaVA-1.5's LoRA recipe (rank 128, alpha 256), the seed (dropout 0.1,
/// the projector at a 10x larger learning rate, LoRA on every attention and MLP projection of
/// the model family: [`default_target_modules`](crate::default_target_modules)) and
/// transformers elsewhere.
/// [`validate`](Self::validate) rejects what cannot work, naming the setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Where checkpoints (`checkpoint-N/`), `metrics.jsonl`, `loss.png` and `run.json` go.
    pub output_dir: PathBuf,
    /// Start a fresh run in an `output_dir` that holds another run, deleting that run's
    /// checkpoints, metrics and loss curve (otherwise refused; see
    /// [`run_dir`](crate::run_dir)).
    pub overwrite_output_dir: bool,
    /// What trains besides the projector.
    pub mode: TrainMode,
    /// Also train the vision tower (frozen by default).
    pub train_vision: bool,
    /// The float type of the frozen weights (mixed-precision training, as PEFT with autocast
    /// does it): the vision tower unless it trains, and the language model's base weights
    /// unless the whole of it trains (mode `full`). What trains is f32 whatever this says
    /// (the projector, LoRA adapters, the language model in mode `full`, the tower with
    /// `train_vision`), and so are AdamW's moments, checkpoints and the loss; see
    /// [`precision_of`](Self::precision_of).
    pub dtype: Precision,
    /// LoRA rank `r` (mode `lora`).
    pub lora_rank: usize,
    /// LoRA `alpha`; the adapter's output is scaled by `alpha / r`.
    pub lora_alpha: f64,
    /// Dropout on the adapters' input while training.
    pub lora_dropout: f64,
    /// Which language-model linears get adapters: a list of names, or one string read with
    /// [`TargetModules::parse`] (`c_attn|w1|w2`: those three names; otherwise a regex over
    /// whole module paths). Absent: the model family's attention and MLP projections
    /// ([`default_target_modules`](crate::default_target_modules)).
    pub target_modules: Option<TargetModules>,
    /// Samples per micro-batch.
    pub per_device_train_batch_size: usize,
    /// Micro-batches per optimizer step.
    pub gradient_accumulation_steps: usize,
    /// Passes over the data (fractions allowed); ignored when `max_steps` is set.
    pub num_train_epochs: f64,
    /// Total optimizer steps; overrides `num_train_epochs`.
    pub max_steps: Option<usize>,
    /// Peak learning rate of everything but the projector (LoRA adapters, the LLM, the
    /// vision tower when trained).
    pub learning_rate: f64,
    /// Peak learning rate of the projector; `learning_rate` when absent.
    pub feature_proj_lr: Option<f64>,
    /// Decoupled weight decay (AdamW), on weights only: biases and norm parameters get none.
    pub weight_decay: f64,
    /// AdamW beta 1.
    pub adam_beta1: f64,
    /// AdamW beta 2.
    pub adam_beta2: f64,
    /// AdamW epsilon.
    pub adam_epsilon: f64,
    /// Warmup as a fraction of the total steps (used when `warmup_steps` is 0).
    pub warmup_ratio: f64,
    /// Warmup steps; overrides `warmup_ratio` when above 0.
    pub warmup_steps: usize,
    /// Decay after warmup.
    pub lr_scheduler_type: LrSchedule,
    /// Global gradient-norm clipping threshold; 0 turns clipping off.
    pub max_grad_norm: f64,
    /// Recompute activations in the backward pass instead of keeping them all (Burn's
    /// balanced checkpointing strategy): less memory, more time, the same gradients. Read by
    /// the program, which picks its autodiff backend by it.
    pub gradient_checkpointing: bool,
    /// Checkpoint every this many optimizer steps (and at the end); 0: only at the end.
    pub save_steps: usize,
    /// Keep at most this many checkpoints, deleting the oldest; absent: keep all.
    pub save_total_limit: Option<usize>,
    /// Log (console and `metrics.jsonl`) every this many optimizer steps.
    pub logging_steps: usize,
    /// Seed of the data order, dropout and every other random choice of the run.
    pub seed: u64,
    /// What a NaN or infinite loss or gradient does.
    pub on_non_finite: NonFinitePolicy,
    /// No progress bar (logs still go to stderr and `metrics.jsonl`).
    pub disable_progress_bar: bool,
    /// The devices of this node, one data-parallel peer each (`["cuda:0", "cuda:1"]`,
    /// `["cpu", "cpu"]`); empty: one peer on the default device. Every node lists as many.
    pub devices: Vec<String>,
    /// Machines (processes) taking part in the run; above 1 they meet at `coordinator`.
    pub num_nodes: usize,
    /// This node's rank among `num_nodes`, from 0; node 0 runs the coordinator and only its
    /// first peer writes checkpoints and logs.
    pub node_rank: usize,
    /// `host:port` of the coordinator (Burn's collective orchestrator, started by node 0);
    /// required when `num_nodes` is above 1.
    pub coordinator: Option<String>,
    /// `host:port` where the other nodes reach this node's tensor service; default: the
    /// coordinator's host, at the coordinator's port + 1 + `node_rank` (right on one machine).
    pub node_address: Option<String>,
    /// Seconds a peer waits for the others at a collective step before failing the run (a
    /// peer that died or hangs): the longest a step may take on the slowest peer.
    pub collective_timeout_s: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("runs/vlm"),
            overwrite_output_dir: false,
            mode: TrainMode::Lora,
            train_vision: false,
            dtype: Precision::F32,
            lora_rank: 128,
            lora_alpha: 256.0,
            lora_dropout: 0.1,
            target_modules: None,
            per_device_train_batch_size: 1,
            gradient_accumulation_steps: 8,
            num_train_epochs: 1.0,
            max_steps: None,
            learning_rate: 1e-4,
            feature_proj_lr: Some(1e-3),
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            warmup_ratio: 0.03,
            warmup_steps: 0,
            lr_scheduler_type: LrSchedule::Cosine,
            max_grad_norm: 1.0,
            gradient_checkpointing: false,
            save_steps: 500,
            save_total_limit: Some(3),
            logging_steps: 10,
            seed: 42,
            on_non_finite: NonFinitePolicy::Skip,
            disable_progress_bar: false,
            devices: Vec::new(),
            num_nodes: 1,
            node_rank: 0,
            coordinator: None,
            node_address: None,
            collective_timeout_s: 600,
        }
    }
}

impl TrainConfig {
    /// Reads a TOML file (every key optional; unknown keys are errors naming them) and
    /// validates it.
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Self, TrainError> {
        let path = path.as_ref();
        let text = vlm_hf::read_bounded_string(path, vlm_hf::MAX_CONFIG_BYTES).map_err(|e| {
            TrainError::ConfigFile {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        let config = Self::from_toml_str(&text).map_err(|e| match e {
            TrainError::ConfigFile { reason, .. } => TrainError::ConfigFile {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses TOML text (see [`from_toml_file`](Self::from_toml_file)) and validates it.
    pub fn from_toml_str(text: &str) -> Result<Self, TrainError> {
        let config: Self = toml::from_str(text).map_err(|e| TrainError::ConfigFile {
            path: PathBuf::from("<toml>"),
            reason: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as TOML text (what a checkpoint stores beside its state).
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig always serialises")
    }

    /// The float type the parameters of `role` are kept in: f32 when they train (see
    /// [`trains`]), else [`dtype`](Self::dtype). What a program loads each part in, and
    /// what [`apply_mode`](crate::apply_mode) casts each parameter to.
    pub fn precision_of(&self, role: Option<Role>) -> Precision {
        match trains(role, self.mode, self.train_vision) {
            true => Precision::F32,
            false => self.dtype,
        }
    }

    /// Peak learning rate of the projector.
    pub fn projector_lr(&self) -> f64 {
        self.feature_proj_lr.unwrap_or(self.learning_rate)
    }

    /// The adapters' settings in mode `lora` for a language model of family `variant` (none
    /// in the other modes): the configured targets, or the family's defaults.
    pub fn lora(&self, variant: QwenVariant) -> Option<LoraConfig> {
        (self.mode == TrainMode::Lora).then(|| {
            let targets = self
                .target_modules
                .clone()
                .unwrap_or_else(|| default_target_modules(variant));
            LoraConfig::new(self.lora_rank, self.lora_alpha, targets)
                .with_dropout(self.lora_dropout)
        })
    }

    /// Checks every setting; the first bad one is the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.output_dir.as_os_str().is_empty() {
            return Err(ConfigError::new("output_dir", "\"\"", "must name a folder"));
        }
        if self.mode == TrainMode::Lora {
            if self.lora_rank == 0 {
                return Err(ConfigError::new(
                    "lora_rank",
                    self.lora_rank,
                    "must be at least 1",
                ));
            }
            if !self.lora_alpha.is_finite() || self.lora_alpha <= 0.0 {
                return Err(ConfigError::new(
                    "lora_alpha",
                    self.lora_alpha,
                    "must be a positive number",
                ));
            }
            if !(0.0..1.0).contains(&self.lora_dropout) {
                return Err(ConfigError::new(
                    "lora_dropout",
                    self.lora_dropout,
                    "must be in [0, 1)",
                ));
            }
            match &self.target_modules {
                Some(TargetModules::Regex(r)) if r.trim().is_empty() => {
                    return Err(ConfigError::new(
                        "target_modules",
                        "\"\"",
                        "names no module",
                    ))
                }
                Some(TargetModules::Names(names)) if names.is_empty() => {
                    return Err(ConfigError::new("target_modules", "[]", "names no module"))
                }
                _ => {}
            }
        }
        if self.per_device_train_batch_size == 0 {
            return Err(ConfigError::new(
                "per_device_train_batch_size",
                0,
                "must be at least 1",
            ));
        }
        if self.gradient_accumulation_steps == 0 {
            return Err(ConfigError::new(
                "gradient_accumulation_steps",
                0,
                "must be at least 1",
            ));
        }
        match self.max_steps {
            Some(0) => {
                return Err(ConfigError::new(
                    "max_steps",
                    0,
                    "must be at least 1 (or left out)",
                ))
            }
            Some(_) => {}
            None if !(self.num_train_epochs.is_finite() && self.num_train_epochs > 0.0) => {
                return Err(ConfigError::new(
                    "num_train_epochs",
                    self.num_train_epochs,
                    "must be positive when max_steps is not set",
                ))
            }
            None => {}
        }
        positive_rate("learning_rate", self.learning_rate)?;
        if let Some(lr) = self.feature_proj_lr {
            positive_rate("feature_proj_lr", lr)?;
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(ConfigError::new(
                "weight_decay",
                self.weight_decay,
                "must be 0 or more",
            ));
        }
        for (field, beta) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(ConfigError::new(field, beta, "must be in [0, 1)"));
            }
        }
        if !(self.adam_epsilon.is_finite() && self.adam_epsilon > 0.0) {
            return Err(ConfigError::new(
                "adam_epsilon",
                self.adam_epsilon,
                "must be positive",
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(ConfigError::new(
                "warmup_ratio",
                self.warmup_ratio,
                "must be in [0, 1)",
            ));
        }
        if let Some(max) = self.max_steps {
            if self.warmup_steps >= max {
                return Err(ConfigError::new(
                    "warmup_steps",
                    self.warmup_steps,
                    format!("must be below max_steps ({max})"),
                ));
            }
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return Err(ConfigError::new(
                "max_grad_norm",
                self.max_grad_norm,
                "must be 0 (off) or positive",
            ));
        }
        if self.save_total_limit == Some(0) {
            return Err(ConfigError::new(
                "save_total_limit",
                0,
                "must be at least 1 (or left out: keep all)",
            ));
        }
        if self.logging_steps == 0 {
            return Err(ConfigError::new("logging_steps", 0, "must be at least 1"));
        }
        self.validate_parallel()
    }

    /// Checks the data-parallel settings.
    fn validate_parallel(&self) -> Result<(), ConfigError> {
        if let Some(empty) = self.devices.iter().find(|d| d.trim().is_empty()) {
            return Err(ConfigError::new(
                "devices",
                format!("{empty:?}"),
                "names an empty device",
            ));
        }
        if self.num_nodes == 0 {
            return Err(ConfigError::new("num_nodes", 0, "must be at least 1"));
        }
        if self.node_rank >= self.num_nodes {
            return Err(ConfigError::new(
                "node_rank",
                self.node_rank,
                format!("must be below num_nodes ({})", self.num_nodes),
            ));
        }
        if self.num_nodes > 1 && self.coordinator.is_none() {
            return Err(ConfigError::new(
                "coordinator",
                "none",
                "must be given (host:port) when num_nodes is above 1",
            ));
        }
        if self.collective_timeout_s == 0 {
            return Err(ConfigError::new(
                "collective_timeout_s",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// Data-parallel peers on this node: one per listed device, at least one.
    pub fn devices_per_node(&self) -> usize {
        self.devices.len().max(1)
    }

    /// Data-parallel peers of the whole run: every node runs [`devices_per_node`](Self::devices_per_node).
    pub fn world_size(&self) -> usize {
        self.devices_per_node() * self.num_nodes
    }

    /// Applies the flags given on a command line over this config, then validates.
    pub fn with_args(mut self, args: &TrainArgs) -> Result<Self, ConfigError> {
        macro_rules! set {
            ($($field:ident),* $(,)?) => {
                $(if let Some(value) = &args.$field {
                    self.$field = value.clone();
                })*
            };
        }
        set!(
            output_dir,
            overwrite_output_dir,
            mode,
            train_vision,
            dtype,
            lora_rank,
            lora_alpha,
            lora_dropout,
            per_device_train_batch_size,
            gradient_accumulation_steps,
            num_train_epochs,
            learning_rate,
            weight_decay,
            adam_beta1,
            adam_beta2,
            adam_epsilon,
            warmup_ratio,
            warmup_steps,
            lr_scheduler_type,
            max_grad_norm,
            gradient_checkpointing,
            save_steps,
            logging_steps,
            seed,
            on_non_finite,
            disable_progress_bar,
            num_nodes,
            node_rank,
            collective_timeout_s,
        );
        if let Some(devices) = &args.devices {
            self.devices = devices.split(',').map(|d| d.trim().to_string()).collect();
        }
        if let Some(coordinator) = &args.coordinator {
            self.coordinator = Some(coordinator.clone());
        }
        if let Some(address) = &args.node_address {
            self.node_address = Some(address.clone());
        }
        if let Some(targets) = &args.target_modules {
            self.target_modules = Some(TargetModules::parse(targets));
        }
        if let Some(steps) = args.max_steps {
            // transformers' convention: max_steps <= 0 means "use the epochs".
            self.max_steps = (steps > 0).then_some(steps as usize);
        }
        if let Some(lr) = args.feature_proj_lr {
            self.feature_proj_lr = Some(lr);
        }
        if let Some(limit) = args.save_total_limit {
            self.save_total_limit = (limit > 0).then_some(limit as usize);
        }
        self.validate()?;
        Ok(self)
    }
}

/// The settings a resumed run may change: how long it runs, what it logs and keeps, and
/// whether it recomputes activations (which changes memory and time, not the gradients).
/// Everything else (model, data, optimizer, seed) must stay what the checkpoint trained with.
pub const RESUMABLE_SETTINGS: &[&str] = &[
    "max_steps",
    "num_train_epochs",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "disable_progress_bar",
    "collective_timeout_s",
    "gradient_checkpointing",
];

impl TrainConfig {
    /// The config of a run resumed from a checkpoint that trained with `self` (its
    /// `train_config.toml`), with the flags `args` applied: only [`RESUMABLE_SETTINGS`] may
    /// change; any other setting that differs is an error naming it. A longer run
    /// (`max_steps`, `num_train_epochs`) recomputes the learning-rate schedule for the new
    /// total (see [`Trainer`](crate::Trainer)).
    pub fn resumed_with(self, args: &TrainArgs) -> Result<Self, TrainError> {
        let saved = toml_table(&self);
        let resumed = self.with_args(args)?;
        let changed = toml_table(&resumed);
        let keys = saved.keys().chain(changed.keys());
        let mut refused: Vec<&String> = keys
            .filter(|key| !RESUMABLE_SETTINGS.contains(&key.as_str()))
            .filter(|key| saved.get(*key) != changed.get(*key))
            .collect();
        refused.dedup();
        if let Some(key) = refused.first() {
            return Err(TrainError::ConfigFile {
                path: PathBuf::from(crate::checkpoint::TRAIN_CONFIG_FILE),
                reason: format!(
                    "`{key}` cannot change when resuming (the checkpoint trained with {}); a \
                     resumed run may change only {}",
                    saved.get(*key).map_or("none".into(), ToString::to_string),
                    RESUMABLE_SETTINGS.join(", ")
                ),
            });
        }
        Ok(resumed)
    }
}

/// The config as a TOML table, key by key.
fn toml_table(config: &TrainConfig) -> toml::Table {
    toml::Table::try_from(config).expect("a TrainConfig always serialises")
}

fn positive_rate(field: &'static str, lr: f64) -> Result<(), ConfigError> {
    if lr.is_finite() && lr > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::new(field, lr, "must be a positive number"))
    }
}

/// Command-line flags that override [`TrainConfig`], in kebab-case
/// (`--per-device-train-batch-size 4`); transformers' `TrainingArguments` spellings, as the
/// seed's `train.sh` passes them (`--per_device_train_batch_size 4`), are accepted too.
/// Each doc line names the default the flag overrides ([`TrainConfig::default`]); a TOML file
/// given to the program may have changed it. Flatten it into a program's own `clap` parser and
/// apply it with [`TrainConfig::with_args`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrainArgs {
    /// Where checkpoints, metrics.jsonl, loss.png and run.json go [default: runs/vlm].
    #[arg(long, alias = "output_dir")]
    pub output_dir: Option<PathBuf>,
    /// Start afresh in an output folder holding another run, deleting its checkpoints and
    /// metrics [default: false: refuse].
    #[arg(long, alias = "overwrite_output_dir", visible_alias = "overwrite", num_args = 0..=1, default_missing_value = "true")]
    pub overwrite_output_dir: Option<bool>,
    /// What trains besides the projector [default: lora].
    #[arg(long, value_enum)]
    pub mode: Option<TrainMode>,
    /// Also train the vision tower [default: false].
    #[arg(long, alias = "train_vision", num_args = 0..=1, default_missing_value = "true")]
    pub train_vision: Option<bool>,
    /// Float type of the frozen weights: f32, bf16 or f16 (mixed precision, as PEFT with
    /// autocast). Only what does not train goes half: the tower (unless --train-vision) and
    /// the language model's base weights in modes lora and projector; in mode full the whole
    /// language model trains, so it stays f32. The projector, LoRA adapters, AdamW's moments,
    /// checkpoints and the loss are always f32 [default: f32].
    #[arg(long, value_name = "DTYPE")]
    pub dtype: Option<Precision>,
    /// LoRA rank [default: 128, LLaVA-1.5's].
    #[arg(long, alias = "lora_rank")]
    pub lora_rank: Option<usize>,
    /// LoRA alpha, the adapters' scaling being alpha / r [default: 256, LLaVA-1.5's].
    #[arg(long, alias = "lora_alpha")]
    pub lora_alpha: Option<f64>,
    /// Dropout on the LoRA adapters' input [default: 0.1].
    #[arg(long, alias = "lora_dropout")]
    pub lora_dropout: Option<f64>,
    /// LoRA targets: names separated by `|` or `,` (`c_attn|w1|w2`, `q_proj,v_proj`), or a
    /// regex over whole module paths [default: the model family's attention and MLP
    /// projections: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj for Qwen2/2.5/3,
    /// c_attn,w1,w2 for Qwen v1].
    #[arg(long, alias = "target_modules")]
    pub target_modules: Option<String>,
    /// Samples per micro-batch, per device [default: 1].
    #[arg(long, alias = "per_device_train_batch_size")]
    pub per_device_train_batch_size: Option<usize>,
    /// Micro-batches per optimizer step [default: 8].
    #[arg(long, alias = "gradient_accumulation_steps")]
    pub gradient_accumulation_steps: Option<usize>,
    /// Passes over the data, ignored when max-steps is set [default: 1].
    #[arg(long, alias = "num_train_epochs")]
    pub num_train_epochs: Option<f64>,
    /// Total optimizer steps, overriding the epochs; 0 or less: use the epochs [default: none].
    #[arg(long, alias = "max_steps", allow_negative_numbers = true)]
    pub max_steps: Option<i64>,
    /// Peak learning rate of everything but the projector [default: 1e-4].
    #[arg(long, alias = "learning_rate")]
    pub learning_rate: Option<f64>,
    /// Peak learning rate of the projector [default: 1e-3].
    #[arg(long, alias = "feature_proj_lr")]
    pub feature_proj_lr: Option<f64>,
    /// AdamW weight decay, not on biases and norms [default: 0].
    #[arg(long, alias = "weight_decay")]
    pub weight_decay: Option<f64>,
    /// AdamW beta 1 [default: 0.9].
    #[arg(long, alias = "adam_beta1")]
    pub adam_beta1: Option<f64>,
    /// AdamW beta 2 [default: 0.999].
    #[arg(long, alias = "adam_beta2")]
    pub adam_beta2: Option<f64>,
    /// AdamW epsilon [default: 1e-8].
    #[arg(long, alias = "adam_epsilon")]
    pub adam_epsilon: Option<f64>,
    /// Warmup as a fraction of the total steps [default: 0.03].
    #[arg(long, alias = "warmup_ratio")]
    pub warmup_ratio: Option<f64>,
    /// Warmup steps, overriding the ratio when above 0 [default: 0].
    #[arg(long, alias = "warmup_steps")]
    pub warmup_steps: Option<usize>,
    /// Decay after warmup [default: cosine].
    #[arg(long, alias = "lr_scheduler_type", value_enum)]
    pub lr_scheduler_type: Option<LrSchedule>,
    /// Global gradient-norm clipping, 0: off [default: 1.0].
    #[arg(long, alias = "max_grad_norm")]
    pub max_grad_norm: Option<f64>,
    /// Recompute activations in the backward pass: less memory, more time, the same
    /// gradients [default: false].
    #[arg(long, alias = "gradient_checkpointing", num_args = 0..=1, default_missing_value = "true")]
    pub gradient_checkpointing: Option<bool>,
    /// Checkpoint every N steps, 0: only at the end [default: 500].
    #[arg(long, alias = "save_steps")]
    pub save_steps: Option<usize>,
    /// Keep the last N checkpoints, 0: all [default: 3].
    #[arg(long, alias = "save_total_limit")]
    pub save_total_limit: Option<i64>,
    /// Log every N steps [default: 10].
    #[arg(long, alias = "logging_steps")]
    pub logging_steps: Option<usize>,
    /// Seed of every random draw: initial projector and LoRA weights, data order, dropout
    /// [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// On a NaN/inf loss or gradient: skip the step or stop the run [default: skip].
    #[arg(long, alias = "on_non_finite", value_enum)]
    pub on_non_finite: Option<NonFinitePolicy>,
    /// No progress bar [default: false].
    #[arg(long, alias = "disable_progress_bar", num_args = 0..=1, default_missing_value = "true")]
    pub disable_progress_bar: Option<bool>,
    /// This node's devices, one data-parallel peer each: `cuda:0,cuda:1`, `cpu,cpu`
    /// [default: one peer on the default device].
    #[arg(long)]
    pub devices: Option<String>,
    /// Machines (processes) in the run; the same on every node [default: 1].
    #[arg(long, alias = "num_nodes")]
    pub num_nodes: Option<usize>,
    /// This node's rank, from 0; node 0 runs the coordinator and writes checkpoints
    /// [default: 0].
    #[arg(long, alias = "node_rank")]
    pub node_rank: Option<usize>,
    /// host:port of the coordinator; the same on every node [default: none; required with
    /// several nodes].
    #[arg(long)]
    pub coordinator: Option<String>,
    /// host:port where the other nodes reach this one [default: coordinator port + 1 + rank].
    #[arg(long, alias = "node_address")]
    pub node_address: Option<String>,
    /// Seconds to wait for the other peers at a step before failing [default: 600].
    #[arg(long, alias = "collective_timeout_s")]
    pub collective_timeout_s: Option<u64>,
}
