//! The training loop for vlm: parameter groups, schedule, gradient accumulation, checkpoints,
//! resume and logs (the seed's `trainer.py` + `train.sh`).
//!
//! - [`TrainConfig`]: every setting, from TOML and `--flags` spelt as transformers'
//!   `TrainingArguments` ([`TrainArgs`]), validated with errors naming the setting.
//! - [`TrainMode`]: the projector alone, the projector and LoRA adapters (the seed), or the
//!   projector and the whole language model; the vision tower frozen unless asked
//!   ([`apply_mode`], by each parameter's `vlm_model::Role`). Frozen parameters never require
//!   a gradient, so Burn's autodiff builds no graph through a frozen tower and the optimizer
//!   keeps no state for them. With [`TrainConfig::dtype`] bf16 or f16 the frozen parts are
//!   kept in that type and what trains in f32 (mixed precision, as PEFT with autocast).
//! - [`GroupedAdamW`]: the seed's four AdamW groups, projector at `feature_proj_lr` and the
//!   rest at `learning_rate`, biases and norm parameters without weight decay.
//! - [`Trainer`]: gradient accumulation (the exact token mean over the micro-batches of a
//!   step), global-norm clipping, warmup + cosine/linear/constant decay ([`Schedule`]), a
//!   NaN/inf guard, logs (console, progress bar, `metrics.jsonl`, `loss.png`), atomic
//!   checkpoints `checkpoint-N/` rotated to `save_total_limit`, resume that reproduces
//!   the uninterrupted run bit for bit ([`checkpoint`]), and a stop flag (what a program's
//!   SIGINT / SIGTERM handler sets) that checkpoints the step in progress
//!   ([`Trainer::with_stop`]).
//!
//! Data comes through [`TrainData`]: a stream of micro-batches per epoch that can be
//! repositioned ([`vlm_data::Position`], saved in checkpoints), which makes resuming exact;
//! [`ShuffledData`] serves in-memory samples that way, [`DatasetSource`] a `vlm-data`
//! manifest `Dataset`.
//!
//! Data-parallel training ([`distributed`]): one peer per device and machine on Burn's
//! collective engine, each on its shard of every global batch, gradients summed by
//! all-reduce; only rank 0 writes checkpoints and logs.
//!
//! Depends on `vlm-model` (and, through it, the lower crates), `vlm-lora` and `vlm-qwen` (the
//! adapters a LoRA run attaches to a Qwen language model, [`attach_lora`]) and `vlm-data`.

#![warn(missing_docs)]

pub mod checkpoint;
mod config;
mod data;
mod dataset;
pub mod distributed;
mod error;
mod grads;
mod heap;
mod lora;
pub mod metrics;
mod optim;
mod params;
pub mod run_dir;
mod schedule;
mod trainer;

pub use checkpoint::{latest_checkpoint, list_checkpoints, TrainerState};
pub use config::{
    LrSchedule, NonFinitePolicy, TrainArgs, TrainConfig, TrainMode, RESUMABLE_SETTINGS,
};
pub use data::{Shard, ShuffledData, TrainBatch, TrainData};
pub use dataset::DatasetSource;
pub use distributed::{run_local_peers, Peer, PeerError};
pub use error::{ConfigError, TrainError};
pub use lora::{attach_lora, default_target_modules, rank_warnings};
pub use optim::GroupedAdamW;
pub use params::{
    apply_mode, group_ids, load_trainable, param_table, save_trainable, trains, ParamGroup,
    ParamInfo,
};
pub use schedule::Schedule;
pub use trainer::{schedule_for, LossFn, Resume, StepReport, TrainOutcome, Trainer};
