//! Runs a model on given inputs and writes what it computes to a safetensors file, to compare
//! a checkpoint with Hugging Face transformers tensor by tensor.
//!
//! ```text
//! # Qwen: logits of token ids (the ids file may be JSON or safetensors)
//! cargo run --release --example forward -- --llm data/fixtures/qwen2_tied \
//!     --ids data/fixtures/qwen2_tied/reference.safetensors --output /tmp/qwen.safetensors
//!
//! # Vision tower: the preprocessed pixels and the selected features of images
//! cargo run --release --example forward -- --vision data/fixtures/siglip_vision \
//!     --image data/fixtures/image_processor/small_rgb.jpg --output /tmp/vision.safetensors
//!
//! # The whole VLM: a llava-hf folder (or --checkpoint DIR, or --llm --vision --projector)
//! cargo run --release --example forward -- --llava data/fixtures/llava \
//!     --ids data/fixtures/llava/reference.safetensors \
//!     --pixels data/fixtures/llava/reference.safetensors --output /tmp/llava.safetensors
//! ```
//!
//! On the Python side, save the same tensors (`safetensors.torch.save_file({"logits":
//! out.logits, ...}, path)`) and compare, or give that file as `--reference FILE`: the program
//! then prints the largest difference of every output found there as one JSON line (what
//! `tools/gpu/check.sh` runs on the committed fixtures). Runs on the backend the Cargo
//! features pick (`--features cuda` for an NVIDIA GPU).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};
use vlm::backend::{check_device, device, Inference};
use vlm::burn::tensor::{Device, Int, Tensor, TensorData};
use vlm::cli::{checkpoint_path, PrecisionArgs};
use vlm::hf::{
    read_config, resolve_model_path, HfError, PreprocessorConfig, SafetensorsWriter, WeightStore,
};
use vlm::image::{ImageError, ImageProcessor};
use vlm::model::{
    causal_lm_loss, load_checkpoint, load_language_model, load_llava_hf, AnyProjector,
    MlpProjector, ModelError, Projector, QwenVlm, VisionLanguageModel, VisionTower, VlmBatch,
};
use vlm::qwen::QwenError;
use vlm::vision::{FeatureSelection, SelectStrategy, VisionEncoder, VisionError};

type B = Inference;

/// Runs a Qwen language model, a vision tower or the whole VLM on given inputs and writes
/// its outputs (f32) to a safetensors file, to compare with transformers.
///
/// Runs, by the flags given:
///
///   --llm DIR --ids FILE              logits [batch, seq, vocab]
///
///   --vision DIR --image PATH...      pixel_values [images, 3, H, W] and image_features
///                                     [images, tokens, width]: the selected hidden state
///
///   --llm DIR --vision DIR --projector FILE --image-token-id ID,
///   --checkpoint DIR or --llava DIR,
///   with --ids FILE [--image PATH...] inputs_embeds, logits; with images also pixel_values,
///                                     vision_features (the tower's) and image_features
///                                     (the projector's, as transformers' get_image_features)
///
/// With `labels` in the ids file, `loss` [1] too: transformers' shifted mean cross-entropy,
/// -100 ignored. `--pixels FILE` replaces `--image` by already preprocessed pixels.
///
/// With `--reference FILE` it also prints one JSON line, {"max_abs_diff": {OUTPUT: d, ...},
/// "worst": d, "tolerance": t, "pass": bool}, and exits with status 2 when "pass" is false.
#[derive(Debug, Parser)]
#[command(name = "forward", verbatim_doc_comment)]
pub struct Args {
    /// Hugging Face folder of a Qwen language model (v1, Qwen2/2.5, Qwen3), or of a LLaVA
    /// checkpoint whose language model is used. Every model flag also takes a hub id
    /// ORG/NAME[@REVISION], found in the local Hugging Face cache (HF_HUB_CACHE, else
    /// $HF_HOME/hub, else ~/.cache/huggingface/hub) and downloaded into it when missing
    /// unless HF_HUB_OFFLINE is set; a local path that exists always wins.
    #[arg(long, value_name = "DIR", value_parser = resolve_model_path)]
    pub llm: Option<PathBuf>,

    /// Hugging Face folder of a CLIP or SigLIP vision model (config.json,
    /// preprocessor_config.json, safetensors), a dual-tower model or a LLaVA checkpoint.
    #[arg(long, value_name = "DIR", value_parser = resolve_model_path)]
    pub vision: Option<PathBuf>,

    /// Key prefix of the tower's weights in the --vision folder (vision_model,
    /// vision_tower.vision_model, ...) [default: found from the file's keys, in any layout
    /// transformers 4 or 5 saves].
    #[arg(long, value_name = "PREFIX", requires = "vision")]
    pub vision_prefix: Option<String>,

    /// LLaVA's vision_feature_layer for the --vision tower (-1 = last layer) [default: the
    /// folder's config.json's, else -2].
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        requires = "vision"
    )]
    pub feature_layer: Option<i64>,

    /// LLaVA's vision_feature_select_strategy for the --vision tower ("default" drops CLIP's
    /// CLS token) [default: the folder's config.json's, else default].
    #[arg(long, value_enum, value_name = "STRATEGY", requires = "vision")]
    pub feature_strategy: Option<Strategy>,

    /// LLaVA MLP projector weights (multi_modal_projector.linear_{1,2}.*, e.g. a checkpoint's
    /// projector.safetensors) between --vision and --llm.
    #[arg(long, value_name = "FILE")]
    pub projector: Option<PathBuf>,

    /// The placeholder token id that marks image tokens in --ids (with --projector).
    #[arg(long, value_name = "ID", requires = "projector")]
    pub image_token_id: Option<u32>,

    /// A vlm checkpoint folder (vlm_config.json, projector.safetensors) to run whole, a
    /// training checkpoint (run/checkpoint-N) or a training run's folder (its latest).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["llm", "vision", "projector", "llava"],
        value_parser = checkpoint_path
    )]
    pub checkpoint: Option<PathBuf>,

    /// A Hugging Face LLaVA folder (LlavaForConditionalGeneration) to run whole.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["llm", "vision", "projector"],
        value_parser = resolve_model_path
    )]
    pub llava: Option<PathBuf>,

    /// Token ids: a .json file {"input_ids": [[..], ..], "attention_mask": [[..], ..],
    /// "labels": [[..], ..]} or a safetensors file with those integer tensors. attention_mask
    /// is optional (all ones), labels too (-100 = not learned).
    #[arg(long, value_name = "FILE")]
    pub ids: Option<PathBuf>,

    /// Images (JPEG, PNG), preprocessed as the tower's preprocessor_config.json says; one per
    /// run of image placeholders in --ids, in order.
    #[arg(long, value_name = "PATH", num_args = 1.., conflicts_with = "pixels")]
    pub image: Vec<PathBuf>,

    /// Already preprocessed images: a safetensors file with pixel_values [images, 3, H, W]
    /// (transformers' own, for instance), used instead of --image.
    #[arg(long, value_name = "FILE")]
    pub pixels: Option<PathBuf>,

    /// The safetensors file to write (alias: --out).
    #[arg(long = "output", alias = "out", value_name = "FILE")]
    pub out: PathBuf,

    /// Reference outputs to compare with (a safetensors file, e.g. a fixture's
    /// reference.safetensors): every output that has a tensor of the same name there is
    /// compared, only where the file's attention_mask is 1 for outputs whose leading dims are
    /// the mask's [batch, seq] (transformers' values at padding are arbitrary).
    #[arg(long, value_name = "FILE")]
    pub reference: Option<PathBuf>,

    /// OUTPUT=KEY: compare the output OUTPUT with the reference's tensor KEY instead of the
    /// one named OUTPUT (a tower's image_features=hidden_states.2, for instance).
    #[arg(long, value_name = "OUTPUT=KEY", requires = "reference", value_parser = parse_rename)]
    pub reference_name: Vec<(String, String)>,

    /// The largest |difference| to --reference that passes.
    #[arg(long, value_name = "T", default_value_t = 1e-4)]
    pub tolerance: f32,

    /// The float type the models are loaded and run in (outputs are written as f32).
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// Parses `OUTPUT=KEY` of `--reference-name`.
fn parse_rename(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((output, key)) if !output.is_empty() && !key.is_empty() => {
            Ok((output.to_string(), key.to_string()))
        }
        _ => Err(format!("{text:?} is not OUTPUT=KEY")),
    }
}

/// LLaVA's vision feature selection strategies.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Strategy {
    /// Drop the CLS token (CLIP); SigLIP keeps every token.
    Default,
    /// Keep every token.
    Full,
}

/// Why a run failed; every message names the file or flag involved.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The flags do not describe a run.
    #[error("{0} (see --help)")]
    Usage(String),
    /// An input file holds something that cannot be run.
    #[error("{path}: {reason}")]
    Input {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading a config or safetensors file failed.
    #[error(transparent)]
    Hf(#[from] HfError),
    /// An image could not be decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The vision tower failed to load or run.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The language model failed to load or run.
    #[error(transparent)]
    Language(#[from] QwenError),
    /// The VLM failed to load or run.
    #[error(transparent)]
    Model(#[from] ModelError),
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A missing GPU or driver is an error here rather than a panic on the backend's first use.
    if let Err(err) = check_device(&device()) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    match run(&args) {
        Ok(ran) => {
            for (name, shape) in ran.written {
                println!("{name:16} {shape:?}");
            }
            println!("wrote {}", args.out.display());
            match ran.comparison {
                None => ExitCode::SUCCESS,
                Some(comparison) => match serde_json::to_string(&comparison) {
                    Ok(line) => {
                        println!("{line}");
                        ExitCode::from(if comparison.pass { 0 } else { 2 })
                    }
                    Err(err) => {
                        eprintln!("error: cannot print the comparison: {err}");
                        ExitCode::FAILURE
                    }
                },
            }
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What a run did.
pub struct Ran {
    /// The names and shapes of the outputs written to `--output`.
    pub written: Vec<(String, Vec<usize>)>,
    /// Their differences to `--reference`, when given.
    pub comparison: Option<Comparison>,
}

/// Runs what `args` ask for, writes the outputs to `--output` and compares them with
/// `--reference`.
pub fn run(args: &Args) -> Result<Ran, ForwardError> {
    let dev = device();
    let outputs = match Mode::of(args)? {
        Mode::Llm(dir) => run_llm(dir, args, &dev)?,
        Mode::Vision(dir) => run_vision(dir, args, &dev)?,
        Mode::Vlm(source) => run_vlm(&source, args, &dev)?,
    };
    outputs.write(&args.out)?;
    let comparison = match &args.reference {
        Some(path) => Some(outputs.compare(path, args, &dev)?),
        None => None,
    };
    Ok(Ran {
        written: outputs.summary(),
        comparison,
    })
}

/// The outputs' largest absolute differences to a reference file.
#[derive(Debug, Serialize)]
pub struct Comparison {
    /// Per compared output (NaN, printed as null, when either side is not finite).
    pub max_abs_diff: BTreeMap<String, f32>,
    /// The largest of them.
    pub worst: f32,
    /// `--tolerance`.
    pub tolerance: f32,
    /// Whether `worst` is within the tolerance.
    pub pass: bool,
}

/// What a run computes.
enum Mode<'a> {
    Llm(&'a Path),
    Vision(&'a Path),
    Vlm(VlmSource<'a>),
}

/// Where the VLM comes from.
enum VlmSource<'a> {
    Parts {
        llm: &'a Path,
        vision: &'a Path,
        projector: &'a Path,
        image_token_id: u32,
    },
    Checkpoint(&'a Path),
    Llava(&'a Path),
}

impl<'a> Mode<'a> {
    fn of(args: &'a Args) -> Result<Self, ForwardError> {
        if let Some(dir) = &args.checkpoint {
            return Ok(Self::Vlm(VlmSource::Checkpoint(dir)));
        }
        if let Some(dir) = &args.llava {
            return Ok(Self::Vlm(VlmSource::Llava(dir)));
        }
        match (&args.llm, &args.vision, &args.projector) {
            (Some(llm), Some(vision), Some(projector)) => Ok(Self::Vlm(VlmSource::Parts {
                llm,
                vision,
                projector,
                image_token_id: args
                    .image_token_id
                    .ok_or_else(|| usage("--projector needs --image-token-id"))?,
            })),
            (Some(llm), None, None) => Ok(Self::Llm(llm)),
            (None, Some(vision), None) => Ok(Self::Vision(vision)),
            (Some(_), Some(_), None) => Err(usage("--llm with --vision needs --projector")),
            (_, _, Some(_)) => Err(usage("--projector needs both --llm and --vision")),
            (None, None, None) => Err(usage(
                "nothing to run: give --llm, --vision, --llm --vision --projector, \
                 --checkpoint or --llava",
            )),
        }
    }
}

fn usage(message: &str) -> ForwardError {
    ForwardError::Usage(message.to_string())
}

fn run_llm(dir: &Path, args: &Args, dev: &Device<B>) -> Result<Outputs, ForwardError> {
    if !args.image.is_empty() || args.pixels.is_some() {
        return Err(usage("images need a vision tower: use the VLM flags"));
    }
    let tokens = Tokens::read(args, dev)?;
    let model = load_language_model::<B>(dir, args.precision.on::<B>(dev)?)?;
    let logits = model.forward(tokens.input_ids, Some(tokens.attention_mask), None, None)?;
    let mut outputs = Outputs::default();
    outputs.add_loss(&logits, tokens.labels)?;
    outputs.add("logits", logits);
    Ok(outputs)
}

fn run_vision(dir: &Path, args: &Args, dev: &Device<B>) -> Result<Outputs, ForwardError> {
    if args.ids.is_some() {
        return Err(usage("--ids needs a language model: use the VLM flags"));
    }
    let tower = load_tower(dir, args, dev)?;
    let pixels = pixels(args, tower.preprocessing(), dev)?
        .ok_or_else(|| usage("--vision needs --image or --pixels"))?;
    let mut outputs = Outputs::default();
    outputs.add("image_features", tower.forward(pixels.clone())?);
    outputs.add("pixel_values", pixels);
    Ok(outputs)
}

fn run_vlm(source: &VlmSource, args: &Args, dev: &Device<B>) -> Result<Outputs, ForwardError> {
    let tokens = Tokens::read(args, dev)?;
    let model = source.load(args, dev)?;
    let pixels = pixels(args, model.vision().preprocessing(), dev)?;
    let mut outputs = Outputs::default();
    if let Some(pixels) = &pixels {
        let vision = model.vision().forward(pixels.clone())?;
        outputs.add("image_features", model.projector().forward(vision.clone())?);
        outputs.add("vision_features", vision);
        outputs.add("pixel_values", pixels.clone());
    }
    let inputs = model.prepare(VlmBatch {
        input_ids: tokens.input_ids,
        attention_mask: Some(tokens.attention_mask),
        pixel_values: pixels,
    })?;
    let language_model = model.language_model();
    let hidden = language_model.forward_hidden(
        inputs.inputs_embeds.clone(),
        Some(inputs.attention_mask),
        Some(inputs.position_ids),
        None,
    )?;
    let logits = language_model.logits(hidden);
    outputs.add("inputs_embeds", inputs.inputs_embeds);
    outputs.add_loss(&logits, tokens.labels)?;
    outputs.add("logits", logits);
    Ok(outputs)
}

impl VlmSource<'_> {
    fn load(&self, args: &Args, dev: &Device<B>) -> Result<QwenVlm<B>, ForwardError> {
        Ok(match *self {
            Self::Checkpoint(dir) => load_checkpoint::<B>(dir, args.precision.on::<B>(dev)?)?.0,
            Self::Llava(dir) => load_llava_hf::<B>(dir, args.precision.on::<B>(dev)?)?,
            Self::Parts {
                llm,
                vision,
                projector,
                image_token_id,
            } => {
                let tower = load_tower(vision, args, dev)?;
                let language_model = load_language_model::<B>(llm, args.precision.on::<B>(dev)?)?;
                let store = WeightStore::open_file(projector)?;
                let (input, output) = (tower.output_dim(), language_model.config().hidden_size);
                let options = args.precision.on::<B>(dev)?;
                let projector = MlpProjector::from_store(&store, input, output, options)?;
                let projector = AnyProjector::Mlp(projector);
                VisionLanguageModel::new(tower, projector, language_model, image_token_id)?
            }
        })
    }
}

/// The tower of a folder, with the folder's feature selection unless the flags give one.
fn load_tower(dir: &Path, args: &Args, dev: &Device<B>) -> Result<VisionTower<B>, ForwardError> {
    let mut selection: FeatureSelection = read_config(dir.join("config.json"))?;
    if let Some(layer) = args.feature_layer {
        selection.layer = layer;
    }
    if let Some(strategy) = args.feature_strategy {
        selection.strategy = match strategy {
            Strategy::Default => SelectStrategy::Default,
            Strategy::Full => SelectStrategy::Full,
        };
    }
    Ok(VisionTower::load(
        dir,
        args.vision_prefix.as_deref(),
        selection,
        args.precision.on::<B>(dev)?,
    )?)
}

/// The `--pixels` tensor, or the `--image` files preprocessed; `None` without either.
fn pixels(
    args: &Args,
    preprocessing: &PreprocessorConfig,
    dev: &Device<B>,
) -> Result<Option<Tensor<B, 4>>, ForwardError> {
    if let Some(path) = &args.pixels {
        let store = WeightStore::open_file(path)?;
        return Ok(Some(store.float_any("pixel_values", dev)?));
    }
    let Some(first) = args.image.first() else {
        return Ok(None);
    };
    let processor = ImageProcessor::new(preprocessing.clone());
    let images = processor.process_batch(&args.image);
    let images = images.into_iter().collect::<Result<Vec<_>, _>>()?;
    let shape = images[0].shape;
    if let Some((path, image)) = args
        .image
        .iter()
        .zip(&images)
        .find(|(_, i)| i.shape != shape)
    {
        return Err(ForwardError::Input {
            path: path.clone(),
            reason: format!(
                "preprocesses to {:?} but {} to {shape:?}: the tower's preprocessing does not \
                 make images of one size",
                image.shape,
                first.display()
            ),
        });
    }
    let data: Vec<f32> = images.iter().flat_map(|i| i.data.iter().copied()).collect();
    let [channels, height, width] = shape;
    let data = TensorData::new(data, [images.len(), channels, height, width]);
    Ok(Some(Tensor::from_data(data, dev)))
}

/// The token inputs of a run.
struct Tokens {
    input_ids: Tensor<B, 2, Int>,
    attention_mask: Tensor<B, 2, Int>,
    labels: Option<Tensor<B, 2, Int>>,
}

/// The JSON form of `--ids`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdsJson {
    input_ids: Vec<Vec<i64>>,
    attention_mask: Option<Vec<Vec<i64>>>,
    labels: Option<Vec<Vec<i64>>>,
}

impl Tokens {
    /// Reads `--ids` (JSON when the file name ends in `.json`, else safetensors).
    fn read(args: &Args, dev: &Device<B>) -> Result<Self, ForwardError> {
        let path = args
            .ids
            .as_deref()
            .ok_or_else(|| usage("this run needs --ids"))?;
        let is_json = path.extension().is_some_and(|ext| ext == "json");
        let (input_ids, attention_mask, labels) = if is_json {
            Self::json(path, dev)?
        } else {
            Self::safetensors(path, dev)?
        };
        let dims = input_ids.dims();
        for (name, tensor) in [("attention_mask", &attention_mask), ("labels", &labels)] {
            if let Some(other) = tensor.as_ref().filter(|t| t.dims() != dims) {
                let reason = format!("{name} is {:?} but input_ids {dims:?}", other.dims());
                return Err(input(path, reason));
            }
        }
        Ok(Self {
            attention_mask: attention_mask.unwrap_or_else(|| Tensor::ones(dims, dev)),
            input_ids,
            labels,
        })
    }

    fn json(path: &Path, dev: &Device<B>) -> Result<Parts, ForwardError> {
        let ids: IdsJson = read_config(path)?;
        let tensor = |name, rows: Option<Vec<Vec<i64>>>| {
            rows.map(|rows| int_tensor(path, name, rows, dev))
                .transpose()
        };
        let input_ids = int_tensor(path, "input_ids", ids.input_ids, dev)?;
        Ok((
            input_ids,
            tensor("attention_mask", ids.attention_mask)?,
            tensor("labels", ids.labels)?,
        ))
    }

    fn safetensors(path: &Path, dev: &Device<B>) -> Result<Parts, ForwardError> {
        let store = WeightStore::open_file(path)?;
        let optional = |name| {
            store
                .contains(name)
                .then(|| store.int(name, dev))
                .transpose()
        };
        Ok((
            store.int("input_ids", dev)?,
            optional("attention_mask")?,
            optional("labels")?,
        ))
    }
}

/// `input_ids`, `attention_mask` and `labels` as read from a file.
type Parts = (
    Tensor<B, 2, Int>,
    Option<Tensor<B, 2, Int>>,
    Option<Tensor<B, 2, Int>>,
);

fn input(path: &Path, reason: String) -> ForwardError {
    ForwardError::Input {
        path: path.to_path_buf(),
        reason,
    }
}

/// A `[rows, len]` int tensor of JSON rows, which must be non-empty, of one length and
/// within the 32-bit range every backend's ints hold.
fn int_tensor(
    path: &Path,
    name: &str,
    rows: Vec<Vec<i64>>,
    dev: &Device<B>,
) -> Result<Tensor<B, 2, Int>, ForwardError> {
    let len = rows.first().map_or(0, Vec::len);
    if len == 0 || rows.iter().any(|row| row.len() != len) {
        let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
        return Err(input(
            path,
            format!("{name} needs rows of one non-zero length, got lengths {lengths:?}"),
        ));
    }
    let values: Vec<i64> = rows.concat();
    if let Some(bad) = values.iter().find(|v| i32::try_from(**v).is_err()) {
        return Err(input(
            path,
            format!("{name} holds {bad}, outside the 32-bit range"),
        ));
    }
    let data = TensorData::new(values, [rows.len(), len]);
    Ok(Tensor::from_data(data, dev))
}

/// The tensors a run writes, in order, as f32.
#[derive(Default)]
struct Outputs(Vec<(String, TensorData)>);

impl Outputs {
    fn add<const D: usize>(&mut self, name: &str, tensor: Tensor<B, D>) {
        let data = tensor.into_data().convert::<f32>();
        self.0.push((name.to_string(), data));
    }

    /// `loss` of `logits` against `labels`, when there are labels.
    fn add_loss(
        &mut self,
        logits: &Tensor<B, 3>,
        labels: Option<Tensor<B, 2, Int>>,
    ) -> Result<(), ForwardError> {
        if let Some(labels) = labels {
            let loss = causal_lm_loss(logits.clone(), labels)?;
            self.add("loss", loss.loss);
        }
        Ok(())
    }

    /// Compares every output that `reference` holds (under its own name or the one
    /// `--reference-name` gives) with it, at unpadded positions.
    fn compare(
        &self,
        reference: &Path,
        args: &Args,
        dev: &Device<B>,
    ) -> Result<Comparison, ForwardError> {
        let store = WeightStore::open_file(reference)?;
        if let Some((output, _)) = args
            .reference_name
            .iter()
            .find(|(output, _)| self.0.iter().all(|(name, _)| name != output))
        {
            return Err(usage(&format!(
                "--reference-name names {output:?}, not an output"
            )));
        }
        let mask = match store.contains("attention_mask") {
            true => Some(store.int::<B, 2>("attention_mask", dev)?.into_data()),
            false => None,
        };
        let mut max_abs_diff = BTreeMap::new();
        for (name, actual) in &self.0 {
            let key = args
                .reference_name
                .iter()
                .find(|(output, _)| output == name)
                .map_or(name.as_str(), |(_, key)| key.as_str());
            if !store.contains(key) {
                continue;
            }
            let expected = reference_values(&store, key, reference, dev)?;
            if expected.shape != actual.shape {
                let reason = format!(
                    "{key} is {:?} but the output {name} {:?}",
                    expected.shape, actual.shape
                );
                return Err(input(reference, reason));
            }
            max_abs_diff.insert(name.clone(), masked_max_diff(actual, &expected, &mask));
        }
        if max_abs_diff.is_empty() {
            let names: Vec<&str> = self.0.iter().map(|(name, _)| name.as_str()).collect();
            let reason = format!("holds none of the outputs {names:?} (see --reference-name)");
            return Err(input(reference, reason));
        }
        let worst = max_abs_diff.values().copied().fold(0.0, nan_max);
        Ok(Comparison {
            max_abs_diff,
            worst,
            tolerance: args.tolerance,
            pass: worst <= args.tolerance,
        })
    }

    fn summary(&self) -> Vec<(String, Vec<usize>)> {
        let shapes = self
            .0
            .iter()
            .map(|(name, data)| (name.clone(), data.shape.to_vec()));
        shapes.collect()
    }

    fn write(&self, path: &Path) -> Result<(), ForwardError> {
        let mut writer = SafetensorsWriter::new();
        for (name, data) in &self.0 {
            writer.add_data(name.as_str(), data.clone());
        }
        Ok(writer.write(path)?)
    }
}

/// A reference float tensor of any rank up to 4, as f32.
fn reference_values(
    store: &WeightStore,
    key: &str,
    path: &Path,
    dev: &Device<B>,
) -> Result<TensorData, ForwardError> {
    let data = match store.info(key)?.shape.len() {
        1 => store.float_any::<B, 1>(key, dev)?.into_data(),
        2 => store.float_any::<B, 2>(key, dev)?.into_data(),
        3 => store.float_any::<B, 3>(key, dev)?.into_data(),
        4 => store.float_any::<B, 4>(key, dev)?.into_data(),
        rank => return Err(input(path, format!("{key} has rank {rank}, not 1 to 4"))),
    };
    Ok(data.convert::<f32>())
}

/// The largest |actual - expected| over the elements whose `[batch, seq]` position the
/// attention mask keeps (every element when there is no mask or the leading dims differ from
/// it); NaN when any compared value is not finite.
fn masked_max_diff(actual: &TensorData, expected: &TensorData, mask: &Option<TensorData>) -> f32 {
    let shape = &actual.shape;
    let keep: Option<Vec<bool>> = mask
        .as_ref()
        .filter(|mask| shape.len() >= 2 && shape[..2] == mask.shape[..])
        .map(|mask| mask.iter::<i64>().map(|m| m != 0).collect());
    let per_position: usize = shape.iter().skip(2).product();
    actual
        .iter::<f32>()
        .zip(expected.iter::<f32>())
        .enumerate()
        .filter(|(i, _)| keep.as_ref().is_none_or(|keep| keep[i / per_position]))
        .map(|(_, (a, e))| (a - e).abs())
        .fold(0.0, nan_max)
}

/// `max` that keeps NaN (f32::max drops it), so a non-finite output never passes.
fn nan_max(max: f32, value: f32) -> f32 {
    if max.is_nan() || value.is_nan() {
        f32::NAN
    } else {
        max.max(value)
    }
}
