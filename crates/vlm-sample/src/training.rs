//! The quickstart's training recipe: the configuration both stages share, and stage 2,
//! LLaVA's (the tower frozen, the projector at its own learning rate and the whole LLM
//! trained on the conversations, collated by `vlm-data`). Stage 1 is
//! [`place_pretraining`](crate::place_pretraining).

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use vlm_data::{collate, EncodedSample, Padding, Sample};
use vlm_image::PixelValues;
use vlm_model::VlmBatch;
use vlm_train::{
    LrSchedule, Resume, ShuffledData, TrainBatch, TrainConfig, TrainError, TrainMode, TrainOutcome,
    Trainer,
};

use crate::sample::Pixels;
use crate::tiny_vlm::{TinyVlm, IMAGE_SIDE};

/// What the two stages share: where they log, the batch size and the peak learning rate.
#[derive(Debug, Clone, PartialEq)]
pub struct StageSettings {
    /// The run's output folder; each stage logs in a subfolder.
    pub out: PathBuf,
    /// Samples per step.
    pub batch_size: usize,
    /// Peak learning rate of the LLM and the vision tower.
    pub lr: f64,
}

impl StageSettings {
    /// One stage's training configuration: `steps` AdamW steps with warmup and cosine decay,
    /// the projector (the place head in stage 1) at `projector_lr`, the vision tower trained
    /// or frozen, logs in `out/subdir`, no checkpoints.
    pub fn config(
        &self,
        subdir: &str,
        steps: usize,
        projector_lr: f64,
        train_vision: bool,
    ) -> TrainConfig {
        TrainConfig {
            output_dir: self.out.join(subdir),
            // The program's own scratch folder: a rerun replaces the previous run.
            overwrite_output_dir: true,
            mode: TrainMode::Full,
            train_vision,
            per_device_train_batch_size: self.batch_size,
            gradient_accumulation_steps: 1,
            max_steps: Some(steps),
            learning_rate: self.lr,
            feature_proj_lr: Some(projector_lr),
            weight_decay: 0.01,
            warmup_ratio: 0.05,
            lr_scheduler_type: LrSchedule::Cosine,
            max_grad_norm: 1.0,
            save_steps: 0,
            save_total_limit: Some(1),
            logging_steps: 50,
            seed: 0,
            ..TrainConfig::default()
        }
    }
}

/// A training sample: compact ids and labels, and its image's pixels.
pub type TrainSample = (EncodedSample, Pixels);

/// Stage 2: trains `model` on `samples` as `config` says (the tower frozen unless it says
/// otherwise), in batches of its per-device batch size shuffled with seed 0, right-padded
/// with `pad`.
pub fn train_llava<B: AutodiffBackend>(
    model: TinyVlm<B>,
    samples: Vec<TrainSample>,
    config: TrainConfig,
    pad: u32,
    device: &B::Device,
) -> Result<TrainOutcome<TinyVlm<B>>, TrainError> {
    let batch_size = config.per_device_train_batch_size;
    let collate = move |batch: &[&TrainSample], dev: &B::Device| llava_batch(batch, pad, dev);
    let mut data = ShuffledData::new(samples, batch_size, 0, collate);
    let loss = |m: &TinyVlm<B>, b: TrainBatch<B>| m.forward_loss(b.inputs, b.labels);
    Trainer::new(config, device.clone(), loss)?.fit(model, &mut data, Resume::No)
}

/// A stage-2 batch, collated by `vlm-data` (right padding, labels masked there).
fn llava_batch<B: AutodiffBackend>(
    batch: &[&TrainSample],
    pad: u32,
    dev: &B::Device,
) -> Result<TrainBatch<B>, TrainError> {
    let samples = batch
        .iter()
        .map(|(encoded, pixels)| Sample {
            encoded: encoded.clone(),
            pixel_values: Some(PixelValues {
                data: pixels.to_vec(),
                shape: [3, IMAGE_SIDE, IMAGE_SIDE],
            }),
        })
        .collect();
    let batch =
        collate(samples, pad, Padding::Right).map_err(|e| TrainError::Data(e.to_string()))?;
    let tensors = batch.to_tensors::<B>(dev);
    let inputs = VlmBatch {
        input_ids: tensors.input_ids,
        attention_mask: Some(tensors.attention_mask),
        pixel_values: tensors.pixel_values,
    };
    Ok(TrainBatch::new(inputs, tensors.labels))
}
