//! What the `vlm` criterion bench and the `bench_run` program share: the benchmark config
//! (`benches/bench_config.json`), random-weight Hugging Face folders written from it and loaded
//! through the normal loaders (so the benched path is the user's path), and one function per
//! measured figure.
//!
//! `tools/bench/compare.py` builds the same models and inputs in PyTorch; the input layout
//! below ([`sample_ids`]) is mirrored there.

pub mod config;
pub mod figures;
pub mod models;
