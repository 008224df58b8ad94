//! The composed vision-language model: projector, splicing image features into the LLM's
//! input embeddings, loss, generation with an image, and checkpoints.
//!
//! A [`VisionLanguageModel`] is generic over its three parts: any
//! [`vlm_vision::VisionEncoder`] (the CLIP/SigLIP towers, or one of your own), any
//! [`Projector`] ([`MlpProjector`], LLaVA's `mlp2x_gelu`; [`PixelShuffleProjector`],
//! nanoVLM's token-reducing variant) and any [`LanguageModel`] (`vlm-qwen`'s trait, implemented
//! for `vlm_qwen::QwenModel`). Widths are checked once, when the parts are assembled.
//!
//! Prompts follow the llava-hf convention: each image is a run of `tokens_per_image`
//! placeholder ids in `input_ids`, anywhere in its sample; the image features replace those
//! rows of the token embeddings, in order ([`VisionLanguageModel::inputs_embeds`]), so the
//! sequence length, attention mask and positions are unchanged. Samples without an image
//! mix freely with samples with one (or several) in a batch.
//!
//! ```no_run
//! use burn::tensor::backend::Backend;
//! use vlm_model::{load_checkpoint, ModelError, VlmBatch};
//! use vlm_qwen::GenerationConfig;
//!
//! fn describe<B: Backend>(batch: VlmBatch<B>, device: &B::Device) -> Result<(), ModelError> {
//!     let (model, config) = load_checkpoint::<B>("runs/llava-qwen/step-1000", device)?;
//!     println!("template {}", config.chat_template.name);
//!     let replies = model.generate(batch, &GenerationConfig::greedy(64), |step| {
//!         println!("{step:?}");
//!     })?;
//!     println!("{replies:?}");
//!     Ok(())
//! }
//! ```
//!
//! A Hugging Face LLaVA folder (`LlavaForConditionalGeneration` with a CLIP or SigLIP tower
//! and a Qwen language model) loads whole with [`load_llava_hf`]; [`load_language_model`]
//! takes only its language model, e.g. to train a new projector on it. [`export_llava`] writes
//! a checkpoint as such a folder (LoRA merged, tokenizer, chat template and processor files),
//! named by the same [`LlavaLayout`] the loader detects.
//!
//! Training computes [`VisionLanguageModel::forward_loss`] (Hugging Face's shifted, mean
//! cross-entropy with the supervised-token count, from the last hidden state a chunk of
//! positions at a time, never as full logits) on an autodiff backend; a checkpoint
//! ([`VisionLanguageModel::save_checkpoint`], [`load_checkpoint`]) stores what training
//! changes, the projector, the language model's LoRA adapters (a PEFT folder `adapter/`) and
//! `vlm_config.json`, written atomically.
//!
//! [`Answerer`] asks a model the [`Question`]s of conversations and grades its answers (the
//! `eval`, `quickstart` and `custom_encoder` programs).
//!
//! Depends on `vlm-vision`, `vlm-qwen`, `vlm-lora`, `vlm-data` (conversations, images and
//! tokenizer of the evaluation) and `vlm-hf`.

#![warn(missing_docs)]

mod batch;
mod chat;
mod checkpoint;
mod config;
mod error;
mod evaluation;
mod export;
mod feature_cache;
mod generation;
mod llava;
mod loss;
mod model;
mod projector;
mod roles;
mod splice;
mod vision_tower;

pub use batch::{read_together, LanguageInputs, VlmBatch};
pub use chat::ChatSession;
pub use checkpoint::{
    load_checkpoint, load_projector, QwenVlm, StagedCheckpoint, ADAPTER_DIR, CONFIG_FILE,
    PROJECTOR_FILE, TOKENIZER_FILE,
};
pub use config::{ChatTemplateConfig, VisionTowerConfig, VlmConfig};
pub use error::ModelError;
pub use evaluation::{normalize, Answerer, EvaluationError, Grade, Prompt, Question};
pub use export::{export_llava, LlavaExport, DEFAULT_MAX_SHARD_BYTES};
pub use feature_cache::ImageFeatureCache;
pub use llava::{
    llava_vision_tower, load_language_model, load_llava_hf, LlavaLayout, TransformersLayout,
};
pub use loss::{causal_lm_loss, chunked_causal_lm_loss, loss_chunk_rows, CausalLmLoss};
pub use model::VisionLanguageModel;
pub use projector::{
    AnyProjector, MlpProjector, PersistentProjector, PixelShuffleProjector, Projector,
    ProjectorConfig, ProjectorKind, HF_PROJECTOR_PREFIX,
};
pub use roles::{ParamRoles, Role, RoleModel};
pub use vision_tower::VisionTower;
pub use vlm_qwen::{inferred_lora_config, LanguageModel, LmHead};
