//! The benchmark figures of `benches/bench_config.json`, timed in one process and printed as
//! one JSON line: what `tools/bench/compare.py` runs, interleaved with PyTorch.
//!
//! ```sh
//! cargo run --release --example bench_run -- write-models --out target/bench/models
//! cargo run --release --example bench_run -- run --models target/bench/models
//! ```
//!
//! Each figure runs once untimed, then `--iters` timed times; the JSON holds every timed
//! value in seconds (per training step, per vision forward of `vision_batch` images, per
//! prefill, per decode step, per preprocessed image).

#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Parser, Subcommand};
use common::config::{BenchConfig, CONFIG_FILE};
use common::figures::{
    decode_prompt, pixels, prefill_ids, BenchResult, InferenceModels, Preprocess, TrainBench,
};
use common::models::{write_models, ModelDirs};
use vlm::backend::Inference;

#[derive(Parser)]
#[command(about = "Time the benchmark figures of benches/bench_config.json, as JSON")]
struct Args {
    /// The benchmark config.
    #[arg(long, default_value = CONFIG_FILE)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the random-weight vision and LLM folders (`OUT/vision`, `OUT/llm`).
    WriteModels {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Times the figures and prints `{"figure": [seconds, ...], ...}`.
    Run {
        /// The folder `write-models` wrote.
        #[arg(long)]
        models: PathBuf,
        /// Comma-separated figures: train_step, vision_forward, prefill, decode_bN (one per
        /// configured batch), preprocess.
        #[arg(long, value_delimiter = ',')]
        figures: Option<Vec<String>>,
        /// Timed repetitions of each figure.
        #[arg(long, default_value_t = 3)]
        iters: usize,
    },
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    let config = BenchConfig::read(&args.config)?;
    match args.command {
        Command::WriteModels { out } => {
            let dirs = write_models(&config, &out)?;
            eprintln!("wrote {} and {}", dirs.vision.display(), dirs.llm.display());
        }
        Command::Run {
            models,
            figures,
            iters,
        } => {
            let wanted = figures.unwrap_or_else(|| all_figures(&config));
            let results = run(&config, &ModelDirs::under(&models), &wanted, iters)?;
            println!("{}", serde_json::to_string(&results)?);
        }
    }
    Ok(())
}

/// Every figure name, in the order they run.
fn all_figures(config: &BenchConfig) -> Vec<String> {
    let mut names = vec![
        "train_step".to_string(),
        "vision_forward".into(),
        "prefill".into(),
    ];
    names.extend(
        config
            .figures
            .decode_batches
            .iter()
            .map(|b| format!("decode_b{b}")),
    );
    names.push("preprocess".into());
    names
}

/// Times each wanted figure: `iters` values in seconds each.
fn run(
    config: &BenchConfig,
    dirs: &ModelDirs,
    wanted: &[String],
    iters: usize,
) -> BenchResult<BTreeMap<String, Vec<f64>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut results = BTreeMap::new();
    if wanted.iter().any(|f| f == "train_step") {
        let scratch = std::env::temp_dir().join(format!("vlm-bench-{}", std::process::id()));
        let mut bench = TrainBench::new(config, dirs, &scratch)?;
        results.insert("train_step".into(), bench.steps(iters)?);
        std::fs::remove_dir_all(&scratch)?;
    }
    let models = InferenceModels::load(dirs)?;
    for figure in wanted.iter().filter(|f| *f != "train_step") {
        let values = match figure.as_str() {
            "vision_forward" => {
                let images = pixels::<Inference>(config, config.figures.vision_batch);
                repeat(iters, || models.vision_forward(images.clone()).map(drop))?
            }
            "prefill" => repeat(iters, || models.prefill(prefill_ids(config)).map(drop))?,
            "preprocess" => {
                let preprocess = Preprocess::new(config, dirs, root)?;
                let repeats = config.figures.preprocess_repeats;
                let per_run = repeat(iters, || preprocess.run(repeats).map(drop))?;
                let images = (repeats * config.figures.preprocess_images.len()).max(1);
                per_run.iter().map(|s| s / images as f64).collect()
            }
            name => decode_figure(config, &models, name, iters)?,
        };
        results.insert(figure.clone(), values);
    }
    Ok(results)
}

/// `decode_bN`: seconds per decode step at batch `N`.
fn decode_figure(
    config: &BenchConfig,
    models: &InferenceModels,
    name: &str,
    iters: usize,
) -> BenchResult<Vec<f64>> {
    let batch: usize = name
        .strip_prefix("decode_b")
        .and_then(|b| b.parse().ok())
        .ok_or_else(|| format!("unknown figure {name:?}"))?;
    let prompt = decode_prompt(config, batch);
    let steps = config.figures.decode_new_tokens;
    models.decode(&prompt, steps)?;
    (0..iters)
        .map(|_| Ok(models.decode(&prompt, steps)? / steps as f64))
        .collect()
}

/// Runs `work` once untimed, then `iters` timed times; returns the seconds of each.
fn repeat(iters: usize, mut work: impl FnMut() -> BenchResult<()>) -> BenchResult<Vec<f64>> {
    work()?;
    (0..iters)
        .map(|_| {
            let start = Instant::now();
            work()?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect()
}
