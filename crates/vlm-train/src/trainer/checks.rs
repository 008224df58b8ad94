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

/// Whether the checkpoint in `dir` (`saved`) can continue as the run of `fresh`: same seed
/// and data, same kind of schedule, not past its end. The schedule's length may differ: the
/// run continues on `fresh`'s schedule, recomputed for the new total (warmup as configured,
/// decay to 0 at the new last step), so steps run after resuming with more steps follow the
/// longer schedule from where it stands at the saved step.
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
    if saved.schedule.kind != fresh.schedule.kind {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "was trained with lr_scheduler_type {:?}, this run has {:?}",
                saved.schedule.kind, fresh.schedule.kind
            ),
        ));
    }
    if saved.step > fresh.schedule.total_steps {
        return Err(TrainError::checkpoint(
            dir,
            format!(
                "is at step {}, past this run's last step {} (max_steps / num_train_epochs may \
                 only grow when resuming)",
                saved.step, fresh.schedule.total_steps
            ),
        ));
    }
    Ok(())
}
