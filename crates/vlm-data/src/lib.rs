//! Training data for vlm: source formats (LLaVA-Instruct, AI Challenger captions), the
//! tokenizer and ChatML template, label masks, batching and the streaming loader.
//!
//! Images are decoded and preprocessed by `vlm-image`; the shuffle order and every seeded
//! choice come from `vlm-rng`. Depends on those two and `vlm-hf`.

pub mod conversation;

pub use conversation::{Conversation, Role, Turn, IMAGE_PLACEHOLDER};

pub mod source;

pub mod batch;
pub mod chat;
pub mod dataset;
pub mod labels;
pub mod position;
pub mod skip;
pub mod stream;
pub mod tokenizer;

pub use batch::{collate, Batch, BatchError, BatchTensors, Padding, Sample};
pub use chat::{
    ChatTemplate, HELPFUL_ASSISTANT_SYSTEM_PROMPT, QWEN25_SYSTEM_PROMPT, SEED_SYSTEM_PROMPT,
};
pub use dataset::{Batches, DataError, Dataset, LoadedBatch, LoaderOptions, SkippedRecord};
pub use labels::{
    supervised_targets, EncodedSample, EncoderConfig, EncoderError, SampleEncoder, IGNORE_INDEX,
};
pub use position::Position;
pub use skip::{InvalidRecord, SkipCounts, SkipReason};
pub use stream::TextStreamer;
pub use tokenizer::{Tokenizer, TokenizerError};
