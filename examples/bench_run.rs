//! The benchmark figures of `benches/bench_config.json`, timed in one process and printed as
//! one JSON line: what `tools/bench/compare.py` runs, interleaved with PyTorch.
//!
//! ```sh
//! cargo run --release --example bench_run -- write-models --output-dir target/bench/models
//! cargo run --release --example bench_run -- run --models target/bench/models
//! ```
//!
//! Each figure runs once untimed, then `--iters` timed times; the JSON holds every timed
//! value in seconds (per training step, per vision forward of `vision_batch` images, per
//! prefill, per decode step, per preprocessed image). `throughput` turns such timings (ours or
//! PyTorch's) into medians and tokens/s or images/s.
//!
//! `--llm-config` / `--vision-config` take the model sizes from published Hugging Face
//! configs instead (`data/configs/`: Qwen2.5-0.5B-Instruct, SigLIP so400m), for real-size
//! figures on a GPU (`tools/gpu/check.sh`).

#[path = "../benches/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use common::config::{BenchConfig, LlmDims, VisionDims, CONFIG_FILE};
use common::figures::{
    decode_prompt, pixels, prefill_ids, BenchResult, InferenceModels, Preprocess, TrainBench,
};
use common::models::{write_models, ModelDirs};
use serde::{Deserialize, Serialize};
use vlm::backend::{device, CheckpointedTrain, Inference, Train};
use vlm::hf::read_config;

#[derive(Parser)]
#[command(about = "Time the benchmark figures of benches/bench_config.json, as JSON")]
struct Args {
    /// The benchmark config.
    #[arg(long, default_value = CONFIG_FILE)]
    config: PathBuf,
    /// A Qwen2 `config.json` (e.g. data/configs/Qwen--Qwen2.5-0.5B-Instruct/config.json) whose
    /// sizes replace the config's `llm`.
    #[arg(long, value_name = "FILE")]
    llm_config: Option<PathBuf>,
    /// A SigLIP `config.json` (its `vision_config`, e.g.
    /// data/configs/google--siglip-so400m-patch14-384/config.json) or SigLIP vision config
    /// whose sizes replace the config's `vision`; a training sample then holds its patch count
    /// of image tokens.
    #[arg(long, value_name = "FILE")]
    vision_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How `train_step` trains: what the memory figures compare.
#[derive(clap::Args, Clone, Copy)]
struct TrainStepOptions {
    /// Recompute activations in the backward pass, as `train --gradient-checkpointing`.
    #[arg(long)]
    gradient_checkpointing: bool,
    /// Compute the loss from full `[batch, seq, vocab]` logits instead of in chunks (the
    /// form training used before; to measure what the chunked loss saves).
    #[arg(long)]
    full_logits_loss: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the random-weight vision and LLM folders (`OUT/vision`, `OUT/llm`).
    WriteModels {
        /// Output folder (alias: --out).
        #[arg(long = "output-dir", alias = "out", value_name = "DIR")]
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
        #[command(flatten)]
        train: TrainStepOptions,
    },
    /// Prints the config in use (after --llm-config / --vision-config) as a bench config file.
    ShowConfig,
    /// Prints the backend and device this build runs on: `{"backend": ..., "device": ...}`.
    Backend,
    /// Reads `run`'s `{"figure": [seconds, ...]}` (or PyTorch's, from `compare.py`) and prints
    /// per figure `{"seconds": [...], "median_s": m, "rate": r, "unit": u}`: tokens/s of the
    /// training step (every token of the batch), prefill and decoding (one token per row and
    /// step), images/s of the vision forward and preprocessing.
    Throughput {
        /// The timings file.
        #[arg(long, value_name = "FILE")]
        timings: PathBuf,
    },
}

fn main() -> ExitCode {
    match run_command(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(args: Args) -> Result<(), Box<dyn Error>> {
    let config = effective_config(&args)?;
    match args.command {
        Command::WriteModels { out } => {
            let dirs = write_models(&config, &out)?;
            eprintln!("wrote {} and {}", dirs.vision.display(), dirs.llm.display());
        }
        Command::Run {
            models,
            figures,
            iters,
            train,
        } => {
            let wanted = figures.unwrap_or_else(|| all_figures(&config));
            let results = run(&config, &ModelDirs::under(&models), &wanted, iters, train)?;
            println!("{}", serde_json::to_string(&results)?);
        }
        Command::ShowConfig => println!("{}", serde_json::to_string_pretty(&config)?),
        Command::Backend => {
            let dev = device();
            let backend = serde_json::json!({
                "backend": Inference::name(&dev),
                "device": format!("{dev:?}"),
            });
            println!("{backend}");
        }
        Command::Throughput { timings } => {
            let timings: BTreeMap<String, Vec<f64>> = read_config(&timings)?;
            println!("{}", serde_json::to_string(&throughput(&config, timings)?)?);
        }
    }
    Ok(())
}

/// `--config` with the sizes of `--llm-config` and `--vision-config` put in.
fn effective_config(args: &Args) -> Result<BenchConfig, Box<dyn Error>> {
    let mut config = BenchConfig::read(&args.config)?;
    if let Some(path) = &args.llm_config {
        let hf = read_json(path)?;
        expect_model_type(path, &hf, "qwen2")?;
        config.llm = LlmDims::deserialize(&hf).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.vision_config {
        let hf = read_json(path)?;
        let hf = hf.get("vision_config").unwrap_or(&hf);
        expect_model_type(path, hf, "siglip_vision_model")?;
        let vision = VisionDims::deserialize(hf).map_err(|e| format!("{}: {e}", path.display()))?;
        if vision.patch_size == 0 || vision.patch_size > vision.image_size {
            let sizes = (vision.image_size, vision.patch_size);
            let reason = format!("image and patch size {sizes:?} make no patch");
            return Err(format!("{}: {reason}", path.display()).into());
        }
        // The patch convolution drops a remainder, as in transformers (so400m: 384 / 14 -> 27).
        config.train.image_tokens = (vision.image_size / vision.patch_size).pow(2);
        config.vision = vision;
    }
    Ok(config)
}

fn read_json(path: &Path) -> Result<serde_json::Value, Box<dyn Error>> {
    Ok(read_config(path)?)
}

/// The bench writes Qwen2 and SigLIP folders: a config of another architecture is refused
/// rather than silently benchmarked as one of those.
fn expect_model_type(
    path: &Path,
    config: &serde_json::Value,
    expected: &str,
) -> Result<(), Box<dyn Error>> {
    match config.get("model_type").and_then(|t| t.as_str()) {
        Some(found) if found == expected => Ok(()),
        found => Err(format!(
            "{}: model_type is {found:?}, the bench builds {expected:?}",
            path.display()
        )
        .into()),
    }
}

/// One figure's timings summarised.
#[derive(Serialize)]
struct Rate {
    seconds: Vec<f64>,
    median_s: f64,
    rate: f64,
    unit: &'static str,
}

/// Medians and rates of every figure in `timings`.
fn throughput(
    config: &BenchConfig,
    timings: BTreeMap<String, Vec<f64>>,
) -> BenchResult<BTreeMap<String, Rate>> {
    timings
        .into_iter()
        .map(|(figure, seconds)| {
            let (work, unit) = work_per_value(config, &figure)?;
            let median_s = median(&seconds).ok_or_else(|| format!("{figure}: no timings"))?;
            let rate = Rate {
                seconds,
                median_s,
                rate: work / median_s,
                unit,
            };
            Ok((figure, rate))
        })
        .collect()
}

/// What one timed value of `figure` processes, and in which unit its rate is.
fn work_per_value(config: &BenchConfig, figure: &str) -> BenchResult<(f64, &'static str)> {
    let figures = &config.figures;
    Ok(match figure {
        "train_step" => (
            (config.train.batch_size * config.sequence_len()) as f64,
            "tokens/s",
        ),
        "vision_forward" => (figures.vision_batch as f64, "images/s"),
        "prefill" => (figures.prefill_tokens as f64, "tokens/s"),
        "preprocess" => (1.0, "images/s"),
        name => {
            let batch: usize = name
                .strip_prefix("decode_b")
                .and_then(|b| b.parse().ok())
                .ok_or_else(|| format!("unknown figure {name:?}"))?;
            (batch as f64, "tokens/s")
        }
    })
}

/// The median of `values` (the mean of the middle two for an even count).
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
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
    train: TrainStepOptions,
) -> BenchResult<BTreeMap<String, Vec<f64>>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut results = BTreeMap::new();
    if wanted.iter().any(|f| f == "train_step") {
        let seconds = match train.gradient_checkpointing {
            true => train_steps::<CheckpointedTrain>(config, dirs, iters, train),
            false => train_steps::<Train>(config, dirs, iters, train),
        }?;
        results.insert("train_step".into(), seconds);
    }
    let inference: Vec<&String> = wanted.iter().filter(|f| *f != "train_step").collect();
    if inference.is_empty() {
        // A training-only run loads nothing more (its peak memory is the step's).
        return Ok(results);
    }
    let models = InferenceModels::load(dirs)?;
    for figure in inference {
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

/// `train_step` on autodiff backend `B`: seconds per timed step.
fn train_steps<B: AutodiffBackend<Device = Device<Inference>>>(
    config: &BenchConfig,
    dirs: &ModelDirs,
    iters: usize,
    options: TrainStepOptions,
) -> BenchResult<Vec<f64>> {
    let scratch = std::env::temp_dir().join(format!("vlm-bench-{}", std::process::id()));
    let mut bench = TrainBench::<B>::new(config, dirs, &scratch, options.full_logits_loss)?;
    let seconds = bench.steps(iters)?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(seconds)
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
