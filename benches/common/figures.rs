//! One function per benchmark figure, each running what a user's program runs: the
//! `vlm-train` [`Trainer`] for the training step, the vision tower's forward, a Qwen prefill
//! into a KV cache, [`QwenModel::generate`] for decoding and the `vlm-image` image processor.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use vlm::backend::{device, Inference};
use vlm::hf::PreprocessorConfig;
use vlm::image::ImageProcessor;
use vlm::lora::TargetModules;
use vlm::model::{
    causal_lm_loss, ProjectorKind, QwenVlm, VisionLanguageModel, VisionTower, VlmBatch,
};
use vlm::qwen::{GenerationConfig, QwenModel};
use vlm::train::{
    attach_lora, LrSchedule, Resume, ShuffledData, TrainBatch, TrainConfig, TrainMode, Trainer,
};
use vlm::vision::{FeatureSelection, SelectStrategy, VisionEncoder};

use super::config::{prompt_ids, sample_ids, BenchConfig};
use super::models::ModelDirs;

/// Result type of the figures: bench code reports any error as text.
pub type BenchResult<T> = Result<T, Box<dyn Error>>;

/// The tower's features: the last layer's output, all 196 patches (as LLaVA with SigLIP).
fn selection() -> FeatureSelection {
    FeatureSelection {
        layer: -1,
        strategy: SelectStrategy::Full,
    }
}

/// Loads the vision tower as the `train` program does.
pub fn load_vision<B: Backend>(dirs: &ModelDirs, dev: &B::Device) -> BenchResult<VisionTower<B>> {
    Ok(VisionTower::<B>::load(
        &dirs.vision,
        None,
        selection(),
        dev,
    )?)
}

/// The training step: the VLM (frozen tower, MLP projector, LoRA on the LLM) and one fixed
/// batch, stepped by `vlm-train`'s [`Trainer`] on autodiff backend `B`
/// ([`Train`](vlm::backend::Train), or [`CheckpointedTrain`](vlm::backend::CheckpointedTrain)
/// as `train --gradient-checkpointing` runs).
pub struct TrainBench<B: AutodiffBackend> {
    model: Option<QwenVlm<B>>,
    batch: TrainBatch<B>,
    config: TrainConfig,
    full_logits: bool,
}

impl<B: AutodiffBackend<Device = Device<Inference>>> TrainBench<B> {
    /// Loads the models of `dirs` as the `train` program does; the trainer writes its logs
    /// under `out`. With `full_logits`, the loss is computed from full `[batch, seq, vocab]`
    /// logits ([`causal_lm_loss`] of [`forward`](VisionLanguageModel::forward)) instead of by
    /// `forward_loss`'s chunks: the form training used before, kept to measure what the
    /// chunked loss saves.
    pub fn new(
        config: &BenchConfig,
        dirs: &ModelDirs,
        out: &Path,
        full_logits: bool,
    ) -> BenchResult<Self> {
        let dev = device();
        let train_config = train_config(config, out.to_path_buf());
        let vision = load_vision::<B>(dirs, &dev)?;
        let (llm, _) = attach_lora(QwenModel::<B>::load(&dirs.llm, &dev)?, &train_config)?;
        let kind = ProjectorKind::Mlp2xGelu;
        let image_token_id = config.image_token_id();
        let model =
            VisionLanguageModel::with_new_projector(vision, kind, llm, image_token_id, &dev)?;
        Ok(Self {
            model: Some(model),
            batch: train_batch(config),
            config: train_config,
            full_logits,
        })
    }

    /// Runs one warm-up step then `steps` timed optimizer steps (forward, backward, clipping,
    /// AdamW) and returns the seconds of each timed one.
    pub fn steps(&mut self, steps: usize) -> BenchResult<Vec<f64>> {
        let model = self.model.take().ok_or("a previous run failed")?;
        let config = TrainConfig {
            max_steps: Some(steps + 1),
            ..self.config.clone()
        };
        let batch = self.batch.clone();
        let size = config.per_device_train_batch_size;
        let collate = move |_: &[&()], _: &Device<B>| Ok(batch.clone());
        let mut data = ShuffledData::new(vec![(); size], size, 0, collate);
        let full_logits = self.full_logits;
        let loss = move |m: &QwenVlm<B>, b: TrainBatch<B>| match full_logits {
            true => causal_lm_loss(m.forward(b.inputs)?, b.labels),
            false => m.forward_loss(b.inputs, b.labels),
        };
        let mut ends = vec![Instant::now()];
        let outcome = Trainer::new(config, device(), loss)?
            .on_step(|_| ends.push(Instant::now()))
            .fit(model, &mut data, Resume::No)?;
        self.model = Some(outcome.model);
        Ok(ends
            .windows(2)
            .skip(1)
            .map(|w| (w[1] - w[0]).as_secs_f64())
            .collect())
    }
}

/// The trainer settings of the bench config: LoRA mode, tower frozen, constant learning
/// rate, clipping, no checkpoints, no progress bar.
fn train_config(config: &BenchConfig, output_dir: PathBuf) -> TrainConfig {
    let train = &config.train;
    TrainConfig {
        output_dir,
        // The program's own scratch folder: a rerun replaces the previous run.
        overwrite_output_dir: true,
        mode: TrainMode::Lora,
        train_vision: false,
        lora_rank: train.lora_rank,
        lora_alpha: train.lora_alpha,
        lora_dropout: 0.0,
        target_modules: Some(TargetModules::names(train.lora_targets.clone())),
        per_device_train_batch_size: train.batch_size,
        gradient_accumulation_steps: 1,
        learning_rate: train.learning_rate,
        feature_proj_lr: Some(train.projector_lr),
        weight_decay: train.weight_decay,
        warmup_ratio: 0.0,
        lr_scheduler_type: LrSchedule::Constant,
        max_grad_norm: train.max_grad_norm,
        save_steps: 0,
        save_total_limit: None,
        logging_steps: 1_000_000,
        disable_progress_bar: true,
        ..TrainConfig::default()
    }
}

/// The training batch: [`sample_ids`] per sample, labels on the text after the image, random
/// pixels.
fn train_batch<B: Backend<Device = Device<Inference>>>(config: &BenchConfig) -> TrainBatch<B> {
    let dev = device();
    let (batch, seq) = (config.train.batch_size, config.sequence_len());
    let ids: Vec<i64> = (0..batch)
        .flat_map(|s| sample_ids(config, s))
        .map(i64::from)
        .collect();
    let supervised_from = seq - config.train.text_tokens.saturating_sub(8);
    let labels: Vec<i64> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| if i % seq >= supervised_from { id } else { -100 })
        .collect();
    let int = |v: Vec<i64>| Tensor::<B, 2, Int>::from_data(TensorData::new(v, [batch, seq]), &dev);
    let inputs = VlmBatch {
        input_ids: int(ids),
        attention_mask: None,
        pixel_values: Some(pixels::<B>(config, batch)),
    };
    TrainBatch::new(inputs, int(labels))
}

/// `count` random images of the tower's size.
pub fn pixels<B: Backend>(config: &BenchConfig, count: usize) -> Tensor<B, 4> {
    let side = config.vision.image_size;
    Tensor::random(
        [count, 3, side, side],
        Distribution::Normal(0.0, 1.0),
        &Default::default(),
    )
}

/// The inference figures' models, without autodiff or LoRA.
pub struct InferenceModels {
    /// The vision tower.
    pub vision: VisionTower<Inference>,
    /// The language model.
    pub llm: QwenModel<Inference>,
}

impl InferenceModels {
    /// Loads both folders.
    pub fn load(dirs: &ModelDirs) -> BenchResult<Self> {
        let dev = device();
        Ok(Self {
            vision: load_vision(dirs, &dev)?,
            llm: QwenModel::load(&dirs.llm, &dev)?,
        })
    }

    /// The tower's features for `pixels`, read back to the host.
    pub fn vision_forward(&self, pixels: Tensor<Inference, 4>) -> BenchResult<TensorData> {
        Ok(self.vision.forward(pixels)?.into_data())
    }

    /// Prefills a fresh KV cache with `ids` (`[batch, len]`) and reads back the last
    /// position's greedy tokens.
    pub fn prefill(&self, ids: Tensor<Inference, 2, Int>) -> BenchResult<TensorData> {
        let [batch, len] = ids.dims();
        let mut cache = self.llm.new_cache();
        let logits = self.llm.forward(ids, None, None, Some(&mut cache))?;
        let vocab = self.llm.config().vocab_size;
        let last = logits.slice([0..batch, len - 1..len, 0..vocab]);
        Ok(last.argmax(2).into_data())
    }

    /// Greedy-generates `1 + steps` tokens after `prompt` with [`QwenModel::generate`] and
    /// returns the seconds of the `steps` decode steps after the first token (which the
    /// prefill makes).
    pub fn decode(&self, prompt: &[Vec<u32>], steps: usize) -> BenchResult<f64> {
        let dev = device();
        let batch = vlm::qwen::left_pad::<Inference>(prompt, 0, &dev)?;
        let mut stamps = Vec::with_capacity(steps + 1);
        self.llm.generate(
            batch.input_ids,
            Some(batch.attention_mask),
            &GenerationConfig::greedy(steps + 1),
            |_| stamps.push(Instant::now()),
        )?;
        match (stamps.first(), stamps.last()) {
            (Some(first), Some(last)) if stamps.len() == steps + 1 => {
                Ok((*last - *first).as_secs_f64())
            }
            _ => Err(format!("generated {} tokens, not {}", stamps.len(), steps + 1).into()),
        }
    }
}

/// Prompt ids of the decode figure as token lists.
pub fn decode_prompt(config: &BenchConfig, batch: usize) -> Vec<Vec<u32>> {
    prompt_ids(config, batch, config.figures.decode_prompt_tokens)
}

/// The prefill figure's `[1, prefill_tokens]` ids.
pub fn prefill_ids(config: &BenchConfig) -> Tensor<Inference, 2, Int> {
    let len = config.figures.prefill_tokens;
    let ids: Vec<i64> = prompt_ids(config, 1, len)
        .concat()
        .into_iter()
        .map(i64::from)
        .collect();
    Tensor::from_data(TensorData::new(ids, [1, len]), &device())
}

/// The preprocessing figure: the tower's image processor and the bytes of the configured
/// image files.
pub struct Preprocess {
    processor: ImageProcessor,
    images: Vec<(PathBuf, Vec<u8>)>,
}

impl Preprocess {
    /// Reads the tower's `preprocessor_config.json` and the images (paths relative to
    /// `root`).
    pub fn new(config: &BenchConfig, dirs: &ModelDirs, root: &Path) -> BenchResult<Self> {
        let preprocessing =
            PreprocessorConfig::from_file(dirs.vision.join(PreprocessorConfig::FILE_NAME))?;
        let images = config
            .figures
            .preprocess_images
            .iter()
            .map(|p| Ok((p.clone(), std::fs::read(root.join(p))?)))
            .collect::<BenchResult<_>>()?;
        Ok(Self {
            processor: ImageProcessor::new(preprocessing),
            images,
        })
    }

    /// Decodes and preprocesses every image `repeats` times, one after the other; returns
    /// how many images that was.
    pub fn run(&self, repeats: usize) -> BenchResult<usize> {
        for _ in 0..repeats {
            for (name, bytes) in &self.images {
                self.processor.process_bytes(bytes, name)?;
            }
        }
        Ok(repeats * self.images.len())
    }
}
