//! The training loop for vlm: parameter groups, schedule, gradient accumulation, checkpoints,
//! resume and logs.
//!
//! Depends on `vlm-model` (and, through it, the lower crates).
