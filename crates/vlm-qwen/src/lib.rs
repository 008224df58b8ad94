//! The Qwen decoder family for vlm (Qwen-7B v1 names, Qwen2/2.5, Qwen3): forward from ids or
//! embeddings, KV cache, generation, Hugging Face weight loading.
//!
//! Generation is one decode loop ([`decode`]) over any [`LanguageModel`], the trait a model
//! implements to be generated from and to serve as a VLM's language model: the plain LLM
//! ([`QwenModel::generate`]) and `vlm-model`'s VLM (image features spliced into the prompt's
//! embeddings, then the same loop) both run it.
//! A server decodes many independent requests together with [`ContinuousBatch`]: each
//! prompt is prefilled alone, then joins the running batch between decode steps and leaves it
//! when it ends, with the tokens it would get alone.
//!
//! One implementation serves the three checkpoint layouts; they differ only in
//! [`QwenConfig`] and in tensor names. Numbers match Hugging Face transformers (eager
//! attention, rotate-half RoPE, left-padding conventions of `generate()`); the tests compare
//! them with the committed reference fixtures.
//!
//! ```no_run
//! use burn::tensor::backend::Backend;
//! use vlm_qwen::{left_pad, GenerationConfig, QwenError, QwenModel};
//!
//! fn chat<B: Backend>(device: &B::Device) -> Result<Vec<Vec<u32>>, QwenError> {
//!     let model = QwenModel::<B>::load("path/to/Qwen2.5-0.5B-Instruct", device)?;
//!     let batch = left_pad::<B>(&[vec![9707, 11], vec![9707]], 151643, device)?;
//!     let config = GenerationConfig {
//!         stop_token_ids: vec![151645],
//!         ..GenerationConfig::greedy(32)
//!     };
//!     let mask = Some(batch.attention_mask);
//!     model.generate(batch.input_ids, mask, &config, |step| println!("{step:?}"))
//! }
//! ```
//!
//! Depends on `vlm-hf` and on `vlm-lora`: every attention and MLP projection is a
//! [`LoraLinear`](vlm_lora::LoraLinear) and [`QwenModel`] implements
//! [`AdaptableModel`](vlm_lora::AdaptableModel) under the checkpoint's own module paths, so
//! PEFT adapters (v1's fused `c_attn` included) attach, train, merge and save as in PEFT;
//! [`QwenModel::save_merged`] writes the merged model back as a checkpoint (`vlm-lora` knows
//! nothing of Qwen).
//!
//! Qwen v1's dynamic NTK and log-n attention scaling act only past the config's
//! `seq_length` (2048 or 8192 tokens); they are not implemented, so a v1 model with either
//! switched on refuses longer inputs ([`QwenConfig::max_context`]) rather than compute
//! something else.

#![warn(missing_docs)]

mod adapt;
mod attention;
mod cache;
mod chooser;
mod config;
mod continuous;
mod decoder;
mod error;
mod generation;
mod head;
mod inputs;
mod language_model;
mod layer;
mod load;
mod mask;
mod mlp;
mod model;
mod names;
mod norm;
mod qkv;
mod rope;
mod rows;
mod sampling;
mod save;

pub use attention::QwenAttention;
pub use cache::KvCache;
pub use config::{QwenConfig, QwenVariant};
pub use continuous::{ContinuousBatch, FinishReason, Finished};
pub use decoder::QwenDecoder;
pub use error::QwenError;
pub use generation::{decode, left_pad, Decoder, GenerationConfig, PaddedBatch, Prompt};
pub use head::LmHead;
pub use language_model::{inferred_lora_config, LanguageModel, RowCache};
pub use layer::QwenDecoderLayer;
pub use mask::position_ids_from_mask;
pub use mlp::QwenMlp;
pub use model::QwenModel;
pub use qkv::{QkvProjection, SplitQkv};
pub use rope::{RopeScaling, RotaryEmbedding, YarnScaling};
pub use sampling::{Decoding, Sampler, SamplingParams};
