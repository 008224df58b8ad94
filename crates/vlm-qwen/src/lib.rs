//! The Qwen decoder family for vlm (Qwen-7B v1 names, Qwen2/2.5, Qwen3): forward from ids or
//! embeddings, KV cache, generation, Hugging Face weight loading.
//!
//! Depends on `vlm-hf` and on `vlm-lora`, whose adaptable linear layer hosts LoRA adapters
//! in the attention and MLP projections (`vlm-lora` knows nothing of Qwen).
