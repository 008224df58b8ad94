//! The shared benchmark config, `benches/bench_config.json`, read by the Rust benches and by
//! `tools/bench/compare.py`.

use std::error::Error;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file every benchmark reads, relative to the repository root.
pub const CONFIG_FILE: &str = "benches/bench_config.json";

/// The whole benchmark setup.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BenchConfig {
    /// The SigLIP-like vision tower.
    pub vision: VisionDims,
    /// The Qwen2-like language model.
    pub llm: LlmDims,
    /// The training step.
    pub train: TrainSetup,
    /// The sizes of the other figures.
    pub figures: FigureSizes,
}

/// Sizes of the vision tower (a `siglip_vision_model`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct VisionDims {
    /// Image side in pixels.
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// Depth.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
}

/// Sizes of the language model (a `qwen2` model).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LlmDims {
    /// Vocabulary; its last id is the image placeholder.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// Depth.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// RoPE base.
    pub rope_theta: f64,
    /// Whether the LM head is the token embedding.
    pub tie_word_embeddings: bool,
}

/// The training step: batch, sequence layout, LoRA and AdamW settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TrainSetup {
    /// Samples per step.
    pub batch_size: usize,
    /// Text tokens per sample.
    pub text_tokens: usize,
    /// Image placeholder tokens per sample (the tower's patch count).
    pub image_tokens: usize,
    /// LoRA rank.
    pub lora_rank: usize,
    /// LoRA alpha.
    pub lora_alpha: f64,
    /// Module names LoRA adapts.
    pub lora_targets: Vec<String>,
    /// AdamW learning rate of the adapters.
    pub learning_rate: f64,
    /// AdamW learning rate of the projector.
    pub projector_lr: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
}

/// Sizes of the inference figures.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FigureSizes {
    /// Images per vision forward.
    pub vision_batch: usize,
    /// Tokens of the prefill figure (batch 1).
    pub prefill_tokens: usize,
    /// Prompt tokens before decoding.
    pub decode_prompt_tokens: usize,
    /// Tokens generated per decode run.
    pub decode_new_tokens: usize,
    /// Batch sizes of the decode figures.
    pub decode_batches: Vec<usize>,
    /// Image files (repository-relative) the preprocessing figure decodes and preprocesses.
    pub preprocess_images: Vec<PathBuf>,
    /// Passes over those images per preprocessing measurement.
    pub preprocess_repeats: usize,
}

impl BenchConfig {
    /// Reads the config at `path`.
    pub fn read(path: &Path) -> Result<Self, Box<dyn Error>> {
        Ok(vlm::hf::read_config(path)?)
    }

    /// Tokens per training sample.
    pub fn sequence_len(&self) -> usize {
        self.train.text_tokens + self.train.image_tokens
    }

    /// The image placeholder id: the last id of the vocabulary.
    pub fn image_token_id(&self) -> u32 {
        (self.llm.vocab_size - 1) as u32
    }
}

/// Token ids of sample `sample` of the training batch: 8 text tokens, the image placeholders,
/// then the remaining text tokens; text ids are `(sample * 131 + position * 17) % (vocab - 1)`.
pub fn sample_ids(config: &BenchConfig, sample: usize) -> Vec<u32> {
    let prefix = config.train.text_tokens.min(8);
    let image = config.train.image_tokens;
    (0..config.sequence_len())
        .map(|p| {
            if (prefix..prefix + image).contains(&p) {
                config.image_token_id()
            } else {
                text_id(config, sample, p)
            }
        })
        .collect()
}

/// Prompt ids for the inference figures: `len` text ids per row, as [`sample_ids`] makes them.
pub fn prompt_ids(config: &BenchConfig, batch: usize, len: usize) -> Vec<Vec<u32>> {
    (0..batch)
        .map(|row| (0..len).map(|p| text_id(config, row, p)).collect())
        .collect()
}

/// The text id at `position` of row `row`: `(row * 131 + position * 17) % (vocab - 1)`, never
/// the image placeholder.
fn text_id(config: &BenchConfig, row: usize, position: usize) -> u32 {
    ((row * 131 + position * 17) % (config.llm.vocab_size - 1)) as u32
}
