//! Training data for vlm: source formats (LLaVA-Instruct, AI Challenger captions), the
//! tokenizer and ChatML template, label masks and batching.
//!
//! Depends on no other vlm crate.
