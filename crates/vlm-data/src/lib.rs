//! Training data for vlm: source formats (LLaVA-Instruct, AI Challenger captions), the
//! tokenizer and ChatML template, label masks and batching.
//!
//! Also image decoding and Hugging Face-exact CLIP / SigLIP preprocessing ([`image`]).
//!
//! Depends only on `vlm-hf` (for `PreprocessorConfig`).

pub mod image;
