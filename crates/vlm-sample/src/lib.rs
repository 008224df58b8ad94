//! What the quickstart-style programs (`quickstart`, `make_sample_data`, `custom_encoder`)
//! build on and the library does not: the synthetic shapes dataset ([`sample`], committed as
//! `data/sample/`, and read back with its images' pixels), the compact vocabulary
//! ([`CompactVocab`]) that lets a tiny model ship a real `tokenizer.json`, and the
//! quickstart's recipe: its tiny model ([`tiny_vlm`]: sizes, random-weight starting folders,
//! the trained model's folders), its two training stages ([`place_pretraining`] of the vision
//! tower, then [`training`]'s LLaVA stage), the [`questions`] it asks and its [`score`]s.
//!
//! The top of the library crates: depends on `vlm-train` (and so on everything below it).

pub mod compact_vocab;
pub mod place_pretraining;
pub mod questions;
pub mod sample;
pub mod score;
pub mod tiny_vlm;
pub mod training;

pub use compact_vocab::{CompactVocab, CompactVocabError};
