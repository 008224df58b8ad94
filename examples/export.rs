//! Exports a checkpoint (base folders, projector, LoRA adapter) as a Hugging Face
//! `LlavaForConditionalGeneration` folder that transformers, vLLM and the Hub load, with its
//! tokenizer, chat template and processor files (`vlm::model::export_llava`).
//!
//! ```text
//! cargo run --release --example export -- --checkpoint runs/llava-qwen \
//!     --output-dir runs/llava-qwen/hf --dtype bf16
//! # in Python: LlavaForConditionalGeneration.from_pretrained("runs/llava-qwen/hf"),
//! #            AutoProcessor.from_pretrained("runs/llava-qwen/hf")
//! ```
//!
//! The LoRA adapters are merged into the language model; the folder loads back here with
//! `--llava DIR` (chat, serve, eval, train).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use vlm::backend::{device, Inference};
use vlm::cli::checkpoint_path;
use vlm::hf::Precision;
use vlm::model::{export_llava, LlavaExport, TransformersLayout, DEFAULT_MAX_SHARD_BYTES};

/// Exports a vlm checkpoint as a transformers LlavaForConditionalGeneration folder.
#[derive(Debug, Parser)]
#[command(name = "export", verbatim_doc_comment)]
struct Args {
    /// The vlm checkpoint folder (vlm_config.json), a training checkpoint (run/checkpoint-N),
    /// a training run's folder (its latest checkpoint) or a hub id ORG/NAME[@REVISION].
    #[arg(long, value_name = "DIR", value_parser = checkpoint_path)]
    checkpoint: PathBuf,

    /// The folder to write (refused when it exists, unless --overwrite).
    #[arg(long = "output-dir", alias = "out", value_name = "DIR")]
    output_dir: PathBuf,

    /// The weights' dtype, f32, bf16 or f16 [default: the base language model's].
    #[arg(long, value_name = "DTYPE")]
    dtype: Option<Precision>,

    /// Whose key layout to write: transformers 5 or 4.
    #[arg(long, value_enum, default_value = "5")]
    layout: Layout,

    /// The largest safetensors shard, in bytes (suffixes KB, MB, GB: 1000s; KiB, MiB, GiB).
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_MAX_SHARD_BYTES, value_parser = parse_size)]
    max_shard_size: u64,

    /// Replace an existing output folder.
    #[arg(long)]
    overwrite: bool,
}

/// `--layout`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Layout {
    #[value(name = "5")]
    V5,
    #[value(name = "4")]
    V4,
}

/// A byte count with an optional decimal (`KB`, `MB`, `GB`) or binary (`KiB`, `MiB`,
/// `GiB`) suffix, as transformers' `max_shard_size` takes it.
fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let factor: u64 = match text[digits.len()..].to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KIB" => 1 << 10,
        "MIB" => 1 << 20,
        "GIB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}`")),
    };
    let count: u64 = digits
        .trim()
        .parse()
        .map_err(|e| format!("`{text}`: {e}"))?;
    count
        .checked_mul(factor)
        .filter(|bytes| *bytes > 0)
        .ok_or_else(|| format!("`{text}`: must be between 1 byte and 2^64"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = LlavaExport {
        layout: match args.layout {
            Layout::V5 => TransformersLayout::V5,
            Layout::V4 => TransformersLayout::V4,
        },
        dtype: args.dtype.map(Precision::dtype),
        max_shard_bytes: args.max_shard_size,
        overwrite: args.overwrite,
    };
    match export_llava::<Inference>(&args.checkpoint, &args.output_dir, &options, &device()) {
        Ok(dir) => {
            println!("LLaVA folder written to {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
