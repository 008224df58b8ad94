//! What the quickstart-style programs (`quickstart`, `make_sample_data`, `custom_encoder`)
//! build on and the library does not: the synthetic shapes dataset ([`sample`], committed as
//! `data/sample/`) and the compact vocabulary ([`CompactVocab`]) that lets a tiny model ship
//! a real `tokenizer.json`.
//!
//! Depends on `vlm-data` (conversations, images, the seeded generator) and `vlm-hf`.

pub mod compact_vocab;
pub mod sample;

pub use compact_vocab::{CompactVocab, CompactVocabError};
