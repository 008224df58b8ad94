//! LoRA for vlm: adapter layers over frozen linears, target selection by module name as PEFT
//! does it, merge/unmerge, and PEFT-compatible adapter files.
//!
//! Model-agnostic: depends only on `vlm-hf`.
