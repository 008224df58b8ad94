//! AdamW over parameter groups, each with its own learning rate and weight decay.
//!
//! Burn 0.21's optimizers take one learning rate per `step` call and update exactly the
//! parameters present in the `GradientsParams` they are given. So each group gets its own
//! `OptimizerAdaptor<AdamW>` (its own decay, its own moments), and a step hands each one only
//! its group's gradients with its group's learning rate: the clean way to the seed's four
//! `torch.optim.AdamW` groups with Burn's own AdamW kernel and state records.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::module::{AutodiffModule, ParamId};
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::record::{FullPrecisionSettings, NamedMpkBytesRecorder, Recorder, RecorderError};
use burn::tensor::backend::AutodiffBackend;

use crate::params::{ParamGroup, ParamInfo};
use crate::{TrainConfig, TrainError};

/// The record of one group's optimizer state, keyed by parameter id.
type GroupRecord<M, B> = <OptimizerAdaptor<AdamW, M, B> as Optimizer<M, B>>::Record;

struct Group<M: AutodiffModule<B>, B: AutodiffBackend> {
    group: ParamGroup,
    peak_lr: f64,
    optimizer: OptimizerAdaptor<AdamW, M, B>,
}

/// One AdamW per non-empty [`ParamGroup`]: the projector groups at `feature_proj_lr`, the
/// others at `learning_rate`; the `*_no_decay` groups without weight decay.
pub struct GroupedAdamW<M: AutodiffModule<B>, B: AutodiffBackend> {
    groups: Vec<Group<M, B>>,
}

impl<M: AutodiffModule<B>, B: AutodiffBackend> GroupedAdamW<M, B> {
    /// An optimizer for the given non-empty groups.
    pub fn new(config: &TrainConfig, groups: impl IntoIterator<Item = ParamGroup>) -> Self {
        let groups = groups
            .into_iter()
            .map(|group| {
                let decay = if group.decays() {
                    config.weight_decay
                } else {
                    0.0
                };
                let adamw = AdamWConfig::new()
                    .with_beta_1(config.adam_beta1 as f32)
                    .with_beta_2(config.adam_beta2 as f32)
                    .with_epsilon(config.adam_epsilon as f32)
                    .with_weight_decay(decay as f32);
                let peak_lr = if group.is_projector() {
                    config.projector_lr()
                } else {
                    config.learning_rate
                };
                Group {
                    group,
                    peak_lr,
                    optimizer: adamw.init(),
                }
            })
            .collect();
        Self { groups }
    }

    /// The groups, in order.
    pub fn groups(&self) -> Vec<ParamGroup> {
        self.groups.iter().map(|g| g.group).collect()
    }

    /// Each group's learning rate at schedule multiplier `factor`.
    pub fn learning_rates(&self, factor: f64) -> Vec<(ParamGroup, f64)> {
        self.groups
            .iter()
            .map(|g| (g.group, g.peak_lr * factor))
            .collect()
    }

    /// Updates `model`: each group's optimizer steps with its gradients (those in `grads`
    /// under its key) at its peak rate times `factor`. Returns the rates applied.
    pub fn step(
        &mut self,
        mut model: M,
        mut grads: BTreeMap<ParamGroup, GradientsParams>,
        factor: f64,
    ) -> (M, Vec<(ParamGroup, f64)>) {
        let mut applied = Vec::with_capacity(self.groups.len());
        for group in &mut self.groups {
            let lr = group.peak_lr * factor;
            let group_grads = grads.remove(&group.group).unwrap_or_default();
            model = group.optimizer.step(lr, model, group_grads);
            applied.push((group.group, lr));
        }
        (model, applied)
    }

    /// Writes every group's state (moments, step counts) to `dir/<group>.mpk`, keyed by
    /// parameter path, not by this process's parameter ids.
    pub fn save(&self, dir: &Path, table: &[ParamInfo]) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::write(dir, e))?;
        let index: HashMap<ParamId, u64> = table
            .iter()
            .enumerate()
            .map(|(i, info)| (info.id, i as u64))
            .collect();
        let paths: Vec<&str> = table.iter().map(|info| info.path.as_str()).collect();
        let paths_file = dir.join(PATHS_FILE);
        let json = serde_json::to_vec_pretty(&paths).expect("paths serialise");
        crate::checkpoint::write_synced(&paths_file, &json)?;
        for group in &self.groups {
            let record: GroupRecord<M, B> = group
                .optimizer
                .to_record()
                .into_iter()
                .map(|(id, state)| (ParamId::from(index[&id]), state))
                .collect();
            let file = group_file(dir, group.group);
            let bytes = recorder()
                .record(record, ())
                .map_err(|e| TrainError::checkpoint(&file, recorder_message(e)))?;
            crate::checkpoint::write_synced(&file, &bytes)?;
        }
        Ok(())
    }

    /// Restores the state saved by [`save`](Self::save) onto this model's parameters (matched
    /// by path). A group with no file starts fresh only if it had no state when saved, which
    /// the file's absence means; a saved path the model lacks is an error.
    pub fn load(
        &mut self,
        dir: &Path,
        table: &[ParamInfo],
        device: &B::Device,
    ) -> Result<(), TrainError> {
        let paths_file = dir.join(PATHS_FILE);
        let bytes =
            std::fs::read(&paths_file).map_err(|e| TrainError::checkpoint(&paths_file, e))?;
        let saved_paths: Vec<String> =
            serde_json::from_slice(&bytes).map_err(|e| TrainError::checkpoint(&paths_file, e))?;
        let ids: HashMap<&str, ParamId> = table
            .iter()
            .map(|info| (info.path.as_str(), info.id))
            .collect();
        for group in &mut self.groups {
            let file = group_file(dir, group.group);
            if !file.is_file() {
                return Err(TrainError::checkpoint(
                    &file,
                    format!(
                        "missing: the checkpoint has no state for group `{}`",
                        group.group.name()
                    ),
                ));
            }
            let bytes = std::fs::read(&file).map_err(|e| TrainError::checkpoint(&file, e))?;
            let record: GroupRecord<M, B> = recorder()
                .load(bytes, device)
                .map_err(|e| TrainError::checkpoint(&file, recorder_message(e)))?;
            let mut remapped = GroupRecord::<M, B>::default();
            for (key, state) in record {
                let path = saved_paths.get(key.val() as usize).ok_or_else(|| {
                    TrainError::checkpoint(&file, format!("unknown parameter index {}", key.val()))
                })?;
                let id = ids.get(path.as_str()).ok_or_else(|| {
                    TrainError::checkpoint(
                        &file,
                        format!("state for `{path}`, which this model lacks"),
                    )
                })?;
                remapped.insert(*id, state);
            }
            let optimizer = std::mem::replace(&mut group.optimizer, AdamWConfig::new().init());
            group.optimizer = optimizer.load_record(remapped);
        }
        Ok(())
    }
}

const PATHS_FILE: &str = "param_paths.json";

/// The MessagePack encoding of the optimizer state; the files are read and written here, so
/// that an I/O failure comes out as the OS error, naming the file.
fn recorder() -> NamedMpkBytesRecorder<FullPrecisionSettings> {
    NamedMpkBytesRecorder::new()
}

/// `dir/<group>.mpk`: the state of one optimizer group.
fn group_file(dir: &Path, group: ParamGroup) -> PathBuf {
    dir.join(format!("{}.mpk", group.name()))
}

/// What a recorder error says, without the enum's Debug wrapping (`Unknown("...")`).
fn recorder_message(error: RecorderError) -> String {
    match error {
        RecorderError::FileNotFound(message)
        | RecorderError::DeserializeError(message)
        | RecorderError::Unknown(message) => message,
    }
}
