//! Lists what a Hugging Face model folder holds: its config's architecture and every tensor
//! with dtype and shape, reading only safetensors headers (instant even for 7B checkpoints).
//!
//! ```text
//! cargo run --example inspect -- data/fixtures/qwen2_tied
//! cargo run --example inspect -- ~/models/Qwen2.5-0.5B-Instruct
//! cargo run --example inspect -- Qwen/Qwen2.5-0.5B-Instruct   # a hub id, from the HF cache
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vlm::hf::{read_config, resolve_model_path, HfError, WeightStore};

/// Lists a Hugging Face model folder's architecture and every tensor with dtype and shape.
#[derive(Debug, Parser)]
#[command(name = "inspect", version)]
struct Args {
    /// The model folder, or a hub id ORG/NAME[@REVISION] (resolved in the local Hugging Face
    /// cache).
    #[arg(value_name = "DIR", value_parser = resolve_model_path)]
    model: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match inspect(&args.model) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn inspect(dir: &std::path::Path) -> Result<(), HfError> {
    let config: serde_json::Value = read_config(dir.join("config.json"))?;
    let architectures = config.get("architectures").cloned().unwrap_or_default();
    let model_type = config.get("model_type").cloned().unwrap_or_default();
    println!(
        "{}: model_type {model_type}, architectures {architectures}",
        dir.display()
    );
    let store = WeightStore::open_dir(dir)?;
    let mut total = 0usize;
    for key in store.keys() {
        let info = store.info(key)?;
        total += info.shape.iter().product::<usize>();
        println!("{key:60} {:5} {:?}", info.dtype, info.shape);
    }
    println!("{} tensors, {total} parameters", store.keys().len());
    Ok(())
}
