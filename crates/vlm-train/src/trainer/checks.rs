//! What must hold before a run starts: something trains, and a checkpoint resumed from
//! belongs to this run.

use std::path::Path;

use crate::checkpoint::TrainerState;
use vlm_model::Role;

use crate::params::ParamInfo;
use crate::{TrainConfig, TrainError, TrainMode};

pub(super) fn check_trainable(table: &[ParamInfo], config: &TrainConfig) -> Result<(), TrainError> {
    if !table.iter().any(|p| p.trainable) {
        return Err(TrainError::NothingToTrain(format!(
            "no parameter trains in mode {:?}; the loop trains the `projector`, `language_model` \
             and `vision` parts of a VisionLanguageModel (parameters with a vlm_model::Role)",
            config.mode
        )));
    }
    if config.mode == TrainMode::Lora {
        let adapters = table
            .iter()
            .any(|p| p.trainable && p.role == Some(Role::Adapter));
        if !adapters {
            return Err(TrainError::NothingToTrain(
                "mode lora, but the language model carries no LoRA adapter: attach adapters \
                 (vlm_train::attach_lora) before training, or use mode projector / full"
                    .into(),
            ));
        }
    }
    Ok(())
}

pub(super) fn check_resumable(
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
