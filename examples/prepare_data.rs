//! Prepares a training manifest (JSONL, one conversation per line) from LLaVA-Instruct and
//! AI Challenger annotation files, as listed in a config file and/or on the command line, and
//! prints what each source gave: records read, samples written, skips by reason.
//!
//! ```text
//! cargo run --release --example prepare_data -- --config data/sample/prepare_train.toml
//! cargo run --release --example prepare_data -- --output llava.jsonl --check-images \
//!     --source kind=llava,annotations=~/data/detail_23k.json,images=~/data/coco/train2017 \
//!     --source kind=llava,annotations=~/data/complex_reasoning_77k.json,images=~/data/coco/train2017
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use vlm::data::source::{
    prepare, refuse_input_as_output, CaptionMode, ImageCheck, PathStyle, PrepareConfig,
    PrepareError, SourceReport, SourceSpec,
};

const CONFIG_HELP: &str = "\
CONFIG FILE (TOML, or JSON when the name ends in .json; relative paths are relative to it):

  output = \"train.jsonl\"     # the manifest to write
  image_paths = \"relative\"   # \"absolute\" (default) or \"relative\" to the manifest's folder
  image_check = \"exists\"     # \"none\", \"exists\" (default) or \"decode\"
  strict = false             # true: stop at the first record that would be skipped
  images_outside_root = false  # true: accept image names leaving a source's images folder

  [[source]]
  name = \"llava-detail\"      # optional, defaults to the annotation file's stem
  kind = \"llava\"             # LLaVA-Instruct JSON: [{id, image, conversations: [{from, value}]}]
  annotations = \"detail_23k.json\"
  images = \"coco/train2017\"  # the folder the records' image names are relative to

  [[source]]
  kind = \"ai_challenger\"     # [{image_id, caption: [..]}], each caption answers 这幅图像描述了什么？
  annotations = \"caption_train_annotations_20170902.json\"
  images = \"caption_train_images_20170902\"
  captions = \"one_random\"    # \"each\" (default): one sample per caption; \"one_random\": one
                             # random caption per image; \"first\": each image's first caption
  seed = 42                  # seeds the <image> position before/after the prompt and the caption choice

Every record and every turn is kept (several conversations on one image give several samples).
Records that cannot be used are skipped and counted by reason (malformed_record, unknown_role,
missing_image_file, undecodable_image, empty_caption, and the training loader's own checks such
as roles_not_alternating or missing_image_placeholder); --strict turns the first one into an
error naming the file and the record index. Image names must stay inside their source's
images folder (no absolute path, no `..`, no symlink out of it; image_outside_root otherwise)
unless images_outside_root is set; a missing images folder is an error. Repeated record ids
are kept and reported (count and examples). The output may not be one of the inputs. The manifest is written to <output>.part and
renamed when complete. With relative image paths, load the manifest with its own folder as the
image root.";

/// Prepare a JSONL training manifest from LLaVA-Instruct and AI Challenger annotations.
#[derive(Parser, Debug)]
#[command(version, after_long_help = CONFIG_HELP)]
struct Args {
    /// Config file listing the output and the sources (see CONFIG FILE below, with --help).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Accept image names that leave their source's images folder (absolute paths, `..`,
    /// symlinks out of it), which are skipped otherwise (overrides `images_outside_root`).
    #[arg(long)]
    images_outside_root: bool,
    /// The manifest to write (overrides the config's `output`).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Add a source, as comma-separated key=value pairs with the keys of a [[source]] table:
    /// kind=llava|ai_challenger,annotations=FILE,images=DIR
    /// and optionally name=N, captions=each|one_random|first, seed=S. Repeatable; read after the
    /// config's sources; paths relative to the working directory.
    #[arg(long = "source", value_name = "SPEC")]
    sources: Vec<SourceSpec>,
    /// How the manifest names images (overrides the config's `image_paths`): absolute, or
    /// relative to the manifest's folder.
    #[arg(long, value_enum)]
    image_paths: Option<PathsArg>,
    /// Decode every image with vlm's decoder, skip the samples whose image does not decode and
    /// list those images at the end (sets image_check = "decode"; =false sets "exists").
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    check_images: Option<bool>,
    /// Stop at the first record that would be skipped, naming the file and the record index
    /// (overrides the config's `strict`; --strict=false turns it off).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    strict: Option<bool>,
    /// Caption mode of every AI Challenger source (overrides their `captions`).
    #[arg(long, value_enum)]
    captions: Option<CaptionsArg>,
    /// Seed of every source (overrides their `seed`).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum PathsArg {
    Absolute,
    Relative,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum CaptionsArg {
    Each,
    #[value(name = "one_random")]
    OneRandom,
    First,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let config = config(args).map_err(|e| e.to_string())?;
    let bar = progress_bar(&config);
    let offsets = source_offsets(&config);
    let result = prepare(&config, &mut |index, progress| {
        let (name, offset) = &offsets[index];
        bar.set_message(name.clone());
        bar.set_position(offset + progress.bytes_read);
    });
    bar.finish_and_clear();
    let reports = result.map_err(|e| e.to_string())?;
    print_table(&reports);
    print_bad_images(&reports);
    print_duplicates(&reports);
    let written: usize = reports.iter().map(|r| r.stats.written).sum();
    let paths = match config.image_paths {
        PathStyle::Absolute => "absolute image paths".to_owned(),
        PathStyle::Relative => "image paths relative to its folder".to_owned(),
    };
    println!(
        "wrote {} ({written} samples, {paths})",
        config.output.display()
    );
    Ok(())
}

/// The config file (if any) with the command line's overrides applied.
fn config(args: Args) -> Result<PrepareConfig, PrepareError> {
    let mut config = match &args.config {
        Some(path) => PrepareConfig::from_file(path)?,
        None => PrepareConfig {
            output: args.output.clone().unwrap_or_default(),
            image_paths: PathStyle::default(),
            image_check: ImageCheck::default(),
            strict: false,
            images_outside_root: false,
            sources: Vec::new(),
        },
    };
    if let Some(output) = args.output {
        config.output = output;
    }
    if config.output.as_os_str().is_empty() {
        return Err(PrepareError::Config {
            path: PathBuf::from("(command line)"),
            detail: "no output manifest: pass --output or a --config with `output`".into(),
        });
    }
    refuse_input_as_output(&config.output, args.config.as_deref())?;
    config.sources.extend(args.sources);
    config.images_outside_root |= args.images_outside_root;
    if let Some(paths) = args.image_paths {
        config.image_paths = match paths {
            PathsArg::Absolute => PathStyle::Absolute,
            PathsArg::Relative => PathStyle::Relative,
        };
    }
    if let Some(check) = args.check_images {
        config.image_check = if check {
            ImageCheck::Decode
        } else {
            ImageCheck::Exists
        };
    }
    config.strict = args.strict.unwrap_or(config.strict);
    for spec in &mut config.sources {
        override_source(spec, args.captions, args.seed);
    }
    Ok(config)
}

fn override_source(spec: &mut SourceSpec, captions: Option<CaptionsArg>, seed: Option<u64>) {
    if let Some(captions) = captions {
        spec.captions = match captions {
            CaptionsArg::Each => CaptionMode::Each,
            CaptionsArg::OneRandom => CaptionMode::OneRandom,
            CaptionsArg::First => CaptionMode::First,
        };
    }
    if let Some(seed) = seed {
        spec.seed = seed;
    }
}

/// Where each source's bytes start in the total that the progress bar counts.
fn source_offsets(config: &PrepareConfig) -> Vec<(String, u64)> {
    let mut offset = 0;
    config
        .sources
        .iter()
        .map(|spec| {
            let start = offset;
            offset += file_size(spec);
            (spec.name.clone(), start)
        })
        .collect()
}

fn file_size(spec: &SourceSpec) -> u64 {
    std::fs::metadata(&spec.annotations).map_or(0, |m| m.len())
}

/// A bar over the annotation bytes of all sources (drawn only on a terminal).
fn progress_bar(config: &PrepareConfig) -> ProgressBar {
    let total = config.sources.iter().map(file_size).sum();
    let template = "{msg:24} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
    match ProgressStyle::with_template(template) {
        Ok(style) => ProgressBar::new(total).with_style(style.progress_chars("=> ")),
        Err(_) => ProgressBar::new(total),
    }
}

fn print_table(reports: &[SourceReport]) {
    let width = reports
        .iter()
        .map(|r| r.name.chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    println!(
        "{:width$}  {:>9}  {:>9}  {:>9}  skip reasons",
        "source", "records", "written", "skipped"
    );
    let mut totals = (0, 0, 0);
    for r in reports {
        let s = &r.stats;
        let reasons = if s.skipped.is_empty() {
            "-".to_owned()
        } else {
            s.reasons_line()
        };
        println!(
            "{:width$}  {:>9}  {:>9}  {:>9}  {reasons}",
            r.name,
            s.records,
            s.written,
            s.skipped_total()
        );
        totals = (
            totals.0 + s.records,
            totals.1 + s.written,
            totals.2 + s.skipped_total(),
        );
    }
    println!(
        "{:width$}  {:>9}  {:>9}  {:>9}",
        "total", totals.0, totals.1, totals.2
    );
}

fn print_bad_images(reports: &[SourceReport]) {
    let bad: Vec<_> = reports.iter().flat_map(|r| &r.stats.bad_images).collect();
    if bad.is_empty() {
        return;
    }
    println!("{} images do not decode:", bad.len());
    for (path, error) in bad {
        println!("  {}: {error}", path.display());
    }
}

fn print_duplicates(reports: &[SourceReport]) {
    for r in reports.iter().filter(|r| r.stats.duplicate_ids > 0) {
        println!(
            "{}: {} samples repeat an earlier id (kept), e.g. {}",
            r.name,
            r.stats.duplicate_ids,
            r.stats.duplicate_examples.join(", ")
        );
    }
}
