//! Writes the synthetic shapes dataset (`vlm::sample::sample`): PNG images of 1-3 coloured shapes,
//! English questions in LLaVA-Instruct format and Chinese captions in AI Challenger format,
//! train and held-out splits. The same options always give the same bytes.
//!
//! ```text
//! cargo run --release --example make_sample_data                  # rewrites data/sample
//! cargo run --release --example make_sample_data -- --check       # byte-identical check
//! cargo run --release --example make_sample_data -- --output-dir /tmp/s --train 2000 --size 224
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use vlm::sample::sample::{generate, write_sample_data, SampleConfig, SampleFile};

/// Generate the synthetic shapes dataset (LLaVA + AI Challenger formats, train + held-out).
///
/// Writes images/{train,heldout}_NNNN.png, llava_{train,heldout}.json and
/// aic_{train,heldout}.json under --output-dir. Prepare a manifest from them with the prepare_data
/// example (data/sample/prepare_train.toml).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Output folder (alias: --out).
    #[arg(
        long = "output-dir",
        alias = "out",
        value_name = "DIR",
        default_value = "data/sample"
    )]
    out: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = SampleConfig::default().seed)]
    seed: u64,
    /// Number of train images.
    #[arg(long, default_value_t = SampleConfig::default().train)]
    train: usize,
    /// Number of held-out images.
    #[arg(long, default_value_t = SampleConfig::default().heldout)]
    heldout: usize,
    /// Image width and height in pixels (16 to 1024).
    #[arg(long, default_value_t = SampleConfig::default().size)]
    size: u32,
    /// Write nothing: compare the files that would be written with those under --output-dir, byte
    /// for byte, and fail if any differs or is missing.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = SampleConfig {
        seed: args.seed,
        train: args.train,
        heldout: args.heldout,
        size: args.size,
    };
    let result = if args.check {
        check(&args.out, &config)
    } else {
        write(&args.out, &config)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn write(out: &Path, config: &SampleConfig) -> Result<(), String> {
    let files = write_sample_data(out, config).map_err(|e| e.to_string())?;
    println!(
        "wrote {} files, {} bytes, under {} ({} train + {} held-out images of {}x{})",
        files.len(),
        total_bytes(&files),
        out.display(),
        config.train,
        config.heldout,
        config.size,
        config.size
    );
    Ok(())
}

fn check(out: &Path, config: &SampleConfig) -> Result<(), String> {
    let files = generate(config).map_err(|e| e.to_string())?;
    let differing: Vec<String> = files
        .iter()
        .filter(|f| std::fs::read(out.join(&f.path)).ok().as_deref() != Some(&f.bytes[..]))
        .map(|f| f.path.display().to_string())
        .collect();
    if !differing.is_empty() {
        return Err(format!(
            "{} of {} files under {} differ or are missing: {}",
            differing.len(),
            files.len(),
            out.display(),
            differing.join(", ")
        ));
    }
    println!(
        "all {} files ({} bytes) under {} are byte-identical to a regeneration",
        files.len(),
        total_bytes(&files),
        out.display()
    );
    Ok(())
}

fn total_bytes(files: &[SampleFile]) -> usize {
    files.iter().map(|f| f.bytes.len()).sum()
}
