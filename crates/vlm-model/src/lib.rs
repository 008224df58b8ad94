//! The composed vision-language model: projector, splicing image features into the LLM's
//! input embeddings, loss, generation with an image, and checkpoints.
//!
//! Depends on `vlm-vision`, `vlm-qwen`, `vlm-lora`, `vlm-data` and `vlm-hf`.
