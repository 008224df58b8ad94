//! Merges a checkpoint's LoRA adapters into its base language model and writes the result as
//! a plain Hugging Face folder (`config.json`, `model.safetensors`, the tokenizer files),
//! which any Qwen loader (this project's, transformers') reads without PEFT.
//!
//! ```text
//! cargo run --release --example merge -- --checkpoint runs/llava-qwen/step-1000 \
//!     --output-dir runs/llava-qwen/merged-llm
//! ```
//!
//! Each adapted weight becomes `W + scaling * B A` (PEFT's `merge_and_unload`); the folder
//! keeps the base model's tensor names, layout and dtype. The vision tower and projector are
//! untouched (they stay in the checkpoint).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vlm::backend::{device, Inference};
use vlm::cli::checkpoint_path;
use vlm::hf::{read_config, HfError};
use vlm::lora::{load_adapter, LoraError};
use vlm::model::{load_language_model, ModelError, VlmConfig, CONFIG_FILE};
use vlm::qwen::QwenError;

type B = Inference;

/// Tokenizer files copied from the base model folder when present (`save_merged` copies
/// `generation_config.json`).
const COPIED_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
];

/// Merges a vlm checkpoint's LoRA adapters into its base language model and writes a
/// Hugging Face folder.
#[derive(Debug, Parser)]
#[command(name = "merge", verbatim_doc_comment)]
struct Args {
    /// The vlm checkpoint folder (vlm_config.json naming the base model and the adapter), or
    /// its Hugging Face hub id ORG/NAME[@REVISION] (from the local cache), a training
    /// checkpoint (run/checkpoint-N) or a training run's folder (its latest checkpoint).
    #[arg(long, value_name = "DIR", value_parser = checkpoint_path)]
    checkpoint: PathBuf,

    /// The folder to write the merged language model to (alias: --out).
    #[arg(long = "output-dir", alias = "out", value_name = "DIR")]
    out: PathBuf,
}

/// Why a merge failed; every message names the folder or file involved.
#[derive(Debug, thiserror::Error)]
enum MergeError {
    /// The checkpoint has no adapter.
    #[error("{} records no LoRA adapter: nothing to merge", path.display())]
    NoAdapter { path: PathBuf },
    /// `vlm_config.json` could not be read.
    #[error(transparent)]
    Config(#[from] HfError),
    /// The base language model did not load.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The adapter did not load.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// Writing the merged model failed.
    #[error(transparent)]
    Qwen(#[from] QwenError),
    /// A tokenizer file could not be copied.
    #[error("cannot copy {} to {}: {source}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match merge(&args.checkpoint, &args.out) {
        Ok(()) => {
            println!("merged language model written to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the base language model with the checkpoint's adapter and writes it merged to `out`.
fn merge(checkpoint: &Path, out: &Path) -> Result<(), MergeError> {
    let config_path = checkpoint.join(CONFIG_FILE);
    let config: VlmConfig = read_config(&config_path)?;
    let Some(adapter) = &config.adapter else {
        return Err(MergeError::NoAdapter { path: config_path });
    };
    let base = checkpoint.join(&config.language_model);
    let language_model = load_language_model::<B>(&base, &device())?;
    let language_model = load_adapter(language_model, checkpoint.join(adapter))?;
    language_model.save_merged(out, base.join("config.json"))?;
    copy_tokenizer(&base, out)
}

/// Copies the base folder's tokenizer files, so the merged folder stands alone.
fn copy_tokenizer(base: &Path, out: &Path) -> Result<(), MergeError> {
    for name in COPIED_FILES {
        let from = base.join(name);
        if from.is_file() {
            let to = out.join(name);
            std::fs::copy(&from, &to).map_err(|source| MergeError::Copy { from, to, source })?;
        }
    }
    Ok(())
}
