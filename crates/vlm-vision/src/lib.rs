//! Vision towers for vlm: the `VisionEncoder` trait and CLIP / SigLIP ViTs loaded from
//! Hugging Face safetensors, with the processors' exact image preprocessing.
//!
//! Depends only on `vlm-hf` (weights and configs).
