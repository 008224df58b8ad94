//! Training data for vlm: source formats (LLaVA-Instruct, AI Challenger captions), the
//! tokenizer and ChatML template, label masks and batching.
//!
//! Also image decoding and Hugging Face-exact CLIP / SigLIP preprocessing ([`image`]).
//!
//! Depends only on `vlm-hf` (for `PreprocessorConfig`).

pub mod image;

pub mod conversation;

pub use conversation::{Conversation, Role, Turn, IMAGE_PLACEHOLDER};

pub mod source;

pub mod batch;
pub mod chat;
pub mod dataset;
pub mod labels;
pub mod shuffle;
pub mod skip;
pub mod stream;
pub mod tokenizer;

pub use batch::{collate, Batch, BatchError, BatchTensors, Padding, Sample};
pub use chat::{
    ChatTemplate, HELPFUL_ASSISTANT_SYSTEM_PROMPT, QWEN25_SYSTEM_PROMPT, SEED_SYSTEM_PROMPT,
};
pub use dataset::{
    Batches, DataError, Dataset, LoadedBatch, LoaderOptions, Position, SkippedRecord,
};
pub use labels::{EncodedSample, EncoderConfig, EncoderError, SampleEncoder, IGNORE_INDEX};
pub use shuffle::epoch_order;
pub use skip::{InvalidRecord, SkipCounts, SkipReason};
pub use stream::TextStreamer;
pub use tokenizer::{Tokenizer, TokenizerError};
