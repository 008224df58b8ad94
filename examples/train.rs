//! Train a LLaVA-style model on a prepared manifest (the seed's `train.sh`): a frozen vision
//! tower, an MLP projector at its own learning rate, and LoRA adapters on the language model
//! (or the projector alone, or the whole language model).
//!
//! ```sh
//! cargo run --release --example train -- \
//!     --manifest data/prepared/train.jsonl --image-root ~/data/coco \
//!     --llm ~/models/qwen2.5-0.5b --vision ~/models/clip-vit-large-patch14-336 \
//!     --output-dir runs/llava-qwen --per-device-train-batch-size 4 \
//!     --gradient-accumulation-steps 8 --num-train-epochs 1 --save-steps 500
//! # after an interruption (Ctrl-C / SIGTERM checkpoint first), from the folder alone:
//! cargo run --release --example train -- --resume runs/llava-qwen --max-steps 3000
//! ```
//!
//! `--resume DIR` (a run folder: its latest checkpoint; or one `checkpoint-N`) reads the
//! run's settings from the checkpoint (`train_config.toml`, `train_program.json`) and needs no
//! other flag; only `vlm_train::RESUMABLE_SETTINGS` may be given (e.g. more `--max-steps`, which
//! recomputes the learning-rate schedule for the new total), others are refused.
//!
//! Data-parallel (README, "Distributed training"): `--devices cuda:0,cuda:1` trains one peer
//! per device on this machine; on several machines, every node runs the same command with
//! `--num-nodes N --node-rank R --coordinator HOST:PORT` (node 0 runs the coordinator and
//! writes checkpoints). `--per-device-train-batch-size` is per peer: the global batch is
//! peers x per-device batch x accumulation.
//!
//! `--llava DIR` continues a Hugging Face LLaVA folder (one `export` wrote, say) instead of
//! `--llm` / `--vision`: its language model, tower, projector and image token.
//! `--train-vision` trains the tower too; each checkpoint then holds it (`model/vision_tower/`).
//! `--gradient-checkpointing` (TOML `gradient_checkpointing = true`) recomputes activations in
//! the backward pass instead of keeping them (Burn's balanced checkpointing): less memory,
//! more time, the same gradients.
//!
//! Settings come from `--config train.toml` (every key of `vlm_train::TrainConfig`), then the
//! `--flags` (kebab-case; transformers' `TrainingArguments` spellings such as
//! `--per_device_train_batch_size` work too). `--seed` seeds every draw: the projector's and
//! the adapters' initial weights, the data order and dropout. Every checkpoint
//! `output_dir/checkpoint-N/` holds the trainer's state (exact resume) and, under `model/`,
//! the `vlm-model` checkpoint: `projector.safetensors`, `vlm_config.json`, the tokenizer
//! trained with (`tokenizer.json`, which `chat`, `serve` and `eval` load when given no
//! `--tokenizer`) and the PEFT adapter (`adapter/`) or, when the whole LLM trains, the merged
//! language model (`language_model/`). `--llm`, `--vision` and `--tokenizer` also take
//! Hugging Face hub ids (`Qwen/Qwen2.5-0.5B-Instruct`), found in the local cache.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Device;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::{Deserialize, Serialize};
use vlm::backend::{device, device_named, CheckpointedTrain, Inference, Train};
use vlm::cli::checkpoint_path;
use vlm::data::{ChatTemplate, Dataset, EncoderConfig, LoaderOptions, SampleEncoder, Tokenizer};
use vlm::hf::{resolve_model_path, Precision};
use vlm::image::ImageProcessor;
use vlm::lora::LoraConfig;
use vlm::model::{
    llava_vision_tower, load_llava_hf, load_projector, AnyProjector, ChatTemplateConfig,
    LanguageModel, ProjectorConfig, ProjectorKind, QwenVlm, Role, StagedCheckpoint,
    VisionLanguageModel, VisionTower, VisionTowerConfig, VlmConfig, PROJECTOR_FILE, TOKENIZER_FILE,
};
use vlm::qwen::QwenModel;
use vlm::train::checkpoint::{TRAINER_STATE_FILE, TRAIN_CONFIG_FILE};
use vlm::train::{
    attach_lora, latest_checkpoint, run_local_peers, DatasetSource, Peer, Resume, TrainArgs,
    TrainBatch, TrainConfig, TrainError, TrainMode, Trainer, TrainerState,
};
use vlm::vision::{SelectStrategy, VisionEncoder};

#[derive(Parser)]
#[command(about = "Train a vision-language model on a prepared manifest")]
struct Args {
    #[command(flatten)]
    program: Program,
    /// A TOML file of training settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Resume the run of a folder (its latest checkpoint) or from one `checkpoint-N` folder:
    /// its saved settings are used; only more steps or epochs and the logging and saving
    /// flags may be given. `--resume` alone: the latest checkpoint of `--output-dir`.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
    resume: Option<PathBuf>,
    #[command(flatten)]
    train: TrainArgs,
}

/// The program's own settings (the training ones are `TrainArgs`): saved in every checkpoint
/// as `train_program.json`, so that `--resume DIR` needs no other flag.
#[derive(clap::Args, Clone, Serialize, Deserialize)]
struct Program {
    /// The prepared manifest: JSONL, one conversation per line (see `prepare_data`).
    #[arg(long, required_unless_present = "resume")]
    manifest: Option<PathBuf>,
    /// Folder the manifest's relative image paths start from [default: the manifest's].
    #[arg(long, alias = "image_root")]
    image_root: Option<PathBuf>,
    /// Hugging Face folder of the base language model (Qwen v1, Qwen2/2.5 or Qwen3), or its
    /// hub id ORG/NAME[@REVISION] (from the local Hugging Face cache, downloaded when missing
    /// unless HF_HUB_OFFLINE is set; a local path that exists always wins).
    #[arg(long, value_parser = resolve_model_path, required_unless_present_any = ["resume", "llava"])]
    llm: Option<PathBuf>,
    /// Hugging Face folder (or hub id) of the vision tower (CLIP or SigLIP).
    #[arg(long, value_parser = resolve_model_path, required_unless_present_any = ["resume", "llava"])]
    vision: Option<PathBuf>,
    /// Continue training a Hugging Face LLaVA folder (`LlavaForConditionalGeneration` with a
    /// CLIP or SigLIP tower and a Qwen language model, transformers 4 or 5 key layout; e.g.
    /// one `export` wrote) or hub id, instead of `--llm` and `--vision`: its language model
    /// (LoRA attached as the mode says), its tower with the feature selection and image token
    /// of its config, and its projector as the starting point.
    #[arg(
        long,
        value_parser = resolve_model_path,
        conflicts_with_all = [
            "llm", "vision", "vision_prefix", "pretrained_projector",
            "vision_feature_layer", "vision_feature_select_strategy",
        ]
    )]
    llava: Option<PathBuf>,
    /// Key prefix of the tower's weights [default: found from the file's keys, in any layout
    /// transformers 4 or 5 saves].
    #[arg(long, alias = "vision_prefix", value_name = "PREFIX")]
    vision_prefix: Option<String>,
    /// LLaVA's vision_feature_layer.
    #[arg(long, alias = "vision_feature_layer", default_value_t = -2, allow_negative_numbers = true)]
    vision_feature_layer: i64,
    /// LLaVA's vision_feature_select_strategy: `default` (drop CLS) or `full`.
    #[arg(
        long,
        alias = "vision_feature_select_strategy",
        default_value = "default"
    )]
    vision_feature_select_strategy: String,
    /// tokenizer.json, a folder holding one, or a hub id [default: the LLM folder's]. Every
    /// checkpoint carries a copy, which later programs load by default.
    #[arg(long, value_parser = resolve_model_path)]
    tokenizer: Option<PathBuf>,
    /// System prompt [default: the seed's].
    #[arg(long, alias = "system_prompt")]
    system_prompt: Option<String>,
    /// Longest training sequence, image tokens included.
    #[arg(long, alias = "max_len", default_value_t = 2048)]
    max_len: usize,
    /// Data loader worker threads [default: one per core].
    #[arg(long)]
    workers: Option<usize>,
    /// Start the projector from a stage-1 one instead of a random init (LLaVA's
    /// `--pretrain_mm_mlp_adapter`): a `projector.safetensors`, or a model folder, training
    /// checkpoint or run folder holding one (its latest checkpoint's). Its kind and widths
    /// must be this run's.
    #[arg(
        long,
        value_name = "PATH",
        aliases = ["pretrained_projector", "pretrain-mm-mlp-adapter", "pretrain_mm_mlp_adapter"],
        value_parser = projector_file
    )]
    pretrained_projector: Option<PathBuf>,
}

/// The projector file `--pretrained-projector TEXT` names: TEXT when it is a file, else the
/// [`PROJECTOR_FILE`] of the model folder it names (see [`checkpoint_path`]); absolute, so
/// the recorded program works from any folder.
fn projector_file(text: &str) -> Result<PathBuf, Box<dyn Error + Send + Sync>> {
    let path = Path::new(text);
    let file = match path.is_file() {
        true => path.to_path_buf(),
        false => checkpoint_path(text)?.join(PROJECTOR_FILE),
    };
    Ok(std::path::absolute(file)?)
}

/// The projector this program trains.
const PROJECTOR: ProjectorKind = ProjectorKind::Mlp2xGelu;

/// The [`PROJECTOR`] from `vision`'s width to `llm`'s.
fn projector_config<B: Backend>(vision: &VisionTower<B>, llm: &QwenModel<B>) -> ProjectorConfig {
    ProjectorConfig {
        kind: PROJECTOR,
        input_dim: vision.output_dim(),
        output_dim: llm.hidden_size(),
    }
}

/// File of the program's settings in a checkpoint.
const PROGRAM_FILE: &str = "train_program.json";

fn main() -> ExitCode {
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match run(args, &matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args, matches: &ArgMatches) -> Result<(), Box<dyn Error + Send + Sync>> {
    let (args, config, resume) = match &args.resume {
        Some(dir) => resumed(&args, matches, dir)?,
        None => {
            let config = match &args.config {
                Some(path) => TrainConfig::from_toml_file(path)?,
                None => TrainConfig::default(),
            }
            .with_args(&args.train)?;
            (args.program, config, Resume::No)
        }
    };
    let peers = Peer::local_peers(&config)?;
    let resume = &resume;
    let stop = stop_on_signals()?;
    let summaries = run_local_peers(peers, |peer| match config.gradient_checkpointing {
        true => train_peer::<CheckpointedTrain>(&args, &config, resume.clone(), peer, stop.clone()),
        false => train_peer::<Train>(&args, &config, resume.clone(), peer, stop.clone()),
    })?;
    for summary in summaries.iter().flatten() {
        println!("{summary}");
    }
    Ok(())
}

/// A flag that SIGINT (Ctrl-C) and SIGTERM set: the trainer then finishes its step, writes a
/// checkpoint and stops. A second signal while it does exits at once (status 1).
fn stop_on_signals() -> Result<Arc<AtomicBool>, Box<dyn Error + Send + Sync>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    Ok(stop)
}

/// The settings of a run resumed from `dir` (a run folder or a checkpoint; empty: the latest
/// checkpoint of `--output-dir`): those saved in the checkpoint, with the flags that may
/// change applied. Program flags other than `--workers` are refused.
fn resumed(
    args: &Args,
    matches: &ArgMatches,
    dir: &Path,
) -> Result<(Program, TrainConfig, Resume), Box<dyn Error + Send + Sync>> {
    let given = &args.program;
    // Flags with a default: given only when typed on the command line.
    let typed = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let fixed = [
        ("--manifest", given.manifest.is_some()),
        ("--image-root", given.image_root.is_some()),
        ("--llm", given.llm.is_some()),
        ("--vision", given.vision.is_some()),
        ("--llava", given.llava.is_some()),
        ("--tokenizer", given.tokenizer.is_some()),
        ("--system-prompt", given.system_prompt.is_some()),
        ("--vision-feature-layer", typed("vision_feature_layer")),
        (
            "--vision-feature-select-strategy",
            typed("vision_feature_select_strategy"),
        ),
        ("--max-len", typed("max_len")),
        (
            "--pretrained-projector",
            given.pretrained_projector.is_some(),
        ),
        ("--config", args.config.is_some()),
    ];
    if let Some((flag, _)) = fixed.iter().find(|(_, set)| *set) {
        return Err(format!(
            "{flag} cannot be given with --resume: the run's checkpoint records it"
        )
        .into());
    }
    let folder = match dir.as_os_str().is_empty() {
        true => args
            .train
            .output_dir
            .clone()
            .unwrap_or(TrainConfig::default().output_dir),
        false => dir.to_path_buf(),
    };
    let checkpoint = match folder.join(TRAINER_STATE_FILE).is_file() {
        true => folder,
        false => latest_checkpoint(&folder).ok_or_else(|| {
            format!(
                "{}: no complete checkpoint to resume from",
                folder.display()
            )
        })?,
    };
    let saved = TrainConfig::from_toml_file(checkpoint.join(TRAIN_CONFIG_FILE))?;
    let config = saved.resumed_with(&args.train)?;
    let program_file = checkpoint.join(PROGRAM_FILE);
    let text = vlm::hf::read_bounded_string(&program_file, vlm::hf::MAX_CONFIG_BYTES)
        .map_err(|e| format!("{}: {e}", program_file.display()))?;
    let mut program: Program =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", program_file.display()))?;
    program.workers = given.workers.or(program.workers);
    Ok((program, config, Resume::From(checkpoint)))
}

/// Trains as data-parallel `peer` (the only one without `--devices` / `--num_nodes`): loads
/// the model on the peer's device and reads the peer's shard of every global batch. The
/// main peer's summary line comes back. `B` is [`Train`], or [`CheckpointedTrain`] with
/// `gradient_checkpointing`.
fn train_peer<B: AutodiffBackend<Device = Device<Inference>>>(
    args: &Program,
    config: &TrainConfig,
    resume: Resume,
    peer: Peer,
    stop: Arc<AtomicBool>,
) -> Result<Option<String>, Box<dyn Error + Send + Sync>> {
    let config = config.clone();
    let dev = match &peer.device {
        Some(name) => device_named(name)?,
        None => device(),
    };
    let main = peer.is_main();
    let manifest = args.manifest.as_deref().ok_or("--manifest is required")?;
    let base = match &args.llava {
        Some(dir) => BaseModel::llava(&absolute(dir)?, &config, &dev)?,
        None => BaseModel::separate(args, &config, &dev)?,
    };
    let (vision, tower, llm_dir) = (base.vision, base.tower, base.llm_dir);
    // Every draw of the run comes from the seed: the adapters' and the projector's initial
    // weights here, dropout and the data order in the trainer.
    B::seed(&dev, config.seed);
    let (llm, lora) = attach_lora(base.llm, &config)?;
    let lora = lora.map(|lora| lora.with_base_model(llm_dir.display().to_string()));

    let tokenizer = Tokenizer::from_path(args.tokenizer.as_ref().unwrap_or(&llm_dir))?;
    let tokenizer_file = absolute(tokenizer.path())?;
    let template = match &args.system_prompt {
        Some(system) => ChatTemplate::new(system.clone()),
        None => ChatTemplate::default(),
    };
    let system_prompt = template.system().map(str::to_string);
    let images = ImageProcessor::new(vision.preprocessing().clone());
    let mut encoder_config = EncoderConfig::new(vision.tokens_per_image(), args.max_len);
    if let Some((_, id)) = &base.projector {
        encoder_config.image_token = image_token_of(&tokenizer, *id)?;
    }
    let encoder = SampleEncoder::new(tokenizer, template, encoder_config)?;
    let image_token_id = encoder.image_token_id();
    let model = match (&args.pretrained_projector, base.projector, &resume) {
        (Some(path), _, Resume::No) => {
            let projector = load_projector(path, &projector_config(&vision, &llm), &dev)?;
            VisionLanguageModel::new(vision, projector, llm, image_token_id)?
        }
        (None, Some((projector, _)), _) => {
            VisionLanguageModel::new(vision, projector, llm, image_token_id)?
        }
        // A resumed run's checkpoint holds the weights, which replace these.
        _ => VisionLanguageModel::with_new_projector(vision, PROJECTOR, llm, image_token_id, &dev)?,
    };

    let image_root = match &args.image_root {
        Some(root) => root.clone(),
        None => manifest.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    let mut options = LoaderOptions::new(config.per_device_train_batch_size * peer.world);
    options.seed = config.seed;
    if let Some(workers) = args.workers {
        options.workers = workers;
    }
    let dataset = Dataset::open(manifest, &image_root, encoder, images, options)?;
    if main {
        println!(
            "{} records in {}; mode {:?}; {} peer(s); output {}",
            dataset.len(),
            manifest.display(),
            config.mode,
            peer.world,
            config.output_dir.display()
        );
    }
    let mut data = DatasetSource::new(dataset).with_shard(peer.rank, peer.world);

    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt,
    };
    let recorded = Recorded {
        mode: config.mode,
        train_vision: config.train_vision,
        dtype: config.dtype,
        llm_dir,
        tower,
        template,
        lora,
        tokenizer: tokenizer_file,
    };
    let program = serde_json::to_vec_pretty(args)?;
    let export = |model: &QwenVlm<B>, dir: &Path| {
        let path = dir.join(PROGRAM_FILE);
        std::fs::write(&path, &program).map_err(|e| TrainError::Checkpoint {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        export_checkpoint(model, dir, &recorded)
    };
    let loss = |m: &QwenVlm<B>, b: TrainBatch<B>| m.forward_loss(b.inputs, b.labels);
    let outcome = Trainer::new(config, dev, loss)?
        .with_export(export)
        .with_peer(peer)
        .with_stop(stop)
        .fit(model, &mut data, resume)?;
    if outcome.interrupted && main {
        return Err(interrupted_message(&outcome.state, outcome.last_checkpoint.as_deref()).into());
    }
    let summary = format!(
        "done: step {}, last loss {:.4}, {} records skipped; last checkpoint {}",
        outcome.state.step,
        outcome.state.last_loss.unwrap_or(f64::NAN),
        data.skipped(),
        outcome
            .last_checkpoint
            .map_or("none".into(), |p| p.display().to_string())
    );
    Ok(main.then_some(summary))
}

/// `interrupted at step N: checkpoint-N written; resume with `train --resume DIR``.
fn interrupted_message(state: &TrainerState, checkpoint: Option<&Path>) -> String {
    let Some(checkpoint) = checkpoint else {
        return format!("interrupted at step {}: no checkpoint written", state.step);
    };
    let name = checkpoint.file_name().unwrap_or(checkpoint.as_os_str());
    let run_dir = checkpoint.parent().unwrap_or(checkpoint);
    format!(
        "interrupted at step {}: {} written; resume with `train --resume {}`",
        state.step,
        name.to_string_lossy(),
        run_dir.display()
    )
}

fn absolute(path: &Path) -> Result<PathBuf, Box<dyn Error + Send + Sync>> {
    Ok(std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// What every exported checkpoint records besides the trained weights.
struct Recorded {
    /// What trains: decides whether the checkpoint holds an adapter or a merged LLM.
    mode: TrainMode,
    /// Whether the tower trains: the checkpoint then holds it (`vision_tower/`).
    train_vision: bool,
    /// The frozen weights' float type, which programs load the checkpoint in by default.
    dtype: Precision,
    /// The base language model folder.
    llm_dir: PathBuf,
    /// The frozen vision tower.
    tower: VisionTowerConfig,
    /// The chat template trained with.
    template: ChatTemplateConfig,
    /// The LoRA settings of a LoRA run.
    lora: Option<LoraConfig>,
    /// The `tokenizer.json` trained with, copied into every checkpoint.
    tokenizer: PathBuf,
}

/// Writes the `vlm-model` checkpoint into `dir/model`: projector, config and a copy of the
/// tokenizer (so `chat`, `serve` and `eval` need no `--tokenizer`), plus the PEFT adapter
/// (LoRA) or the merged language model (full).
fn export_checkpoint<B: Backend>(
    model: &QwenVlm<B>,
    dir: &Path,
    recorded: &Recorded,
) -> Result<(), TrainError> {
    let destination = dir.join(vlm::train::checkpoint::MODEL_DIR);
    let failed = |e: &dyn std::fmt::Display| TrainError::Checkpoint {
        path: destination.clone(),
        reason: e.to_string(),
    };
    let language_model = match recorded.mode {
        TrainMode::Full => PathBuf::from("language_model"),
        _ => recorded.llm_dir.clone(),
    };
    let mut tower = recorded.tower.clone();
    if recorded.train_vision {
        tower.path = PathBuf::from(VISION_TOWER_DIR);
        tower.weight_prefix = None;
    }
    let template = recorded.template.clone();
    let mut config = VlmConfig::for_model(model, language_model, tower, template);
    config.tokenizer = Some(PathBuf::from(TOKENIZER_FILE));
    config.dtype = Some(recorded.dtype);
    let staged = StagedCheckpoint::with_lora(&destination, model, &config, recorded.lora.as_ref())?;
    let tokenizer_copy = staged.path().join(TOKENIZER_FILE);
    std::fs::copy(&recorded.tokenizer, &tokenizer_copy).map_err(|e| {
        failed(&format!(
            "cannot copy the tokenizer {}: {e}",
            recorded.tokenizer.display()
        ))
    })?;
    if recorded.train_vision {
        let tower_dir = staged.path().join(VISION_TOWER_DIR);
        model.vision().save(&tower_dir).map_err(|e| failed(&e))?;
    }
    if recorded.mode == TrainMode::Full {
        model
            .language_model()
            .save_merged(
                staged.path().join("language_model"),
                recorded.llm_dir.join("config.json"),
            )
            .map_err(|e| failed(&e))?;
    }
    staged.commit()?;
    Ok(())
}

/// Subfolder of a checkpoint's model holding the tower of a `--train-vision` run.
const VISION_TOWER_DIR: &str = "vision_tower";

/// What a run starts from, before LoRA and the projector: the tower, the language model and
/// where they came from; with `--llava`, also the folder's projector and image token id.
struct BaseModel<B: Backend> {
    vision: VisionTower<B>,
    llm: QwenModel<B>,
    /// How checkpoints record the tower.
    tower: VisionTowerConfig,
    /// The base language model folder (a LLaVA folder's language model is read from it).
    llm_dir: PathBuf,
    /// The LLaVA folder's projector and image token id.
    projector: Option<(AnyProjector<B>, u32)>,
}

impl<B: Backend> BaseModel<B> {
    /// `--llm` and `--vision` with the feature selection flags, each loaded in the type
    /// `config` keeps it in (a frozen part in `--dtype`, without an f32 copy).
    fn separate(
        args: &Program,
        config: &TrainConfig,
        dev: &B::Device,
    ) -> Result<Self, Box<dyn Error + Send + Sync>> {
        let llm_dir = absolute(args.llm.as_deref().ok_or("--llm is required")?)?;
        let vision_dir = absolute(args.vision.as_deref().ok_or("--vision is required")?)?;
        let feature_strategy = match args.vision_feature_select_strategy.as_str() {
            "default" => SelectStrategy::Default,
            "full" => SelectStrategy::Full,
            other => return Err(format!("unknown vision_feature_select_strategy {other:?}").into()),
        };
        let tower = VisionTowerConfig {
            path: vision_dir,
            weight_prefix: args.vision_prefix.clone(),
            feature_layer: args.vision_feature_layer,
            feature_strategy,
        };
        let vision = VisionTower::<B>::load(
            &tower.path,
            tower.weight_prefix.as_deref(),
            tower.selection(),
            config.precision_of(Some(Role::Vision)).on::<B>(dev)?,
        )?;
        let llm_type = config.precision_of(Some(Role::LanguageModel));
        let llm = QwenModel::<B>::load(&llm_dir, llm_type.on::<B>(dev)?)?;
        Ok(Self {
            vision,
            llm,
            tower,
            llm_dir,
            projector: None,
        })
    }

    /// A Hugging Face LLaVA folder: all three parts and its settings, read in the type
    /// `config` keeps the language model in (the trainer then widens what trains to f32).
    fn llava(
        dir: &Path,
        config: &TrainConfig,
        dev: &B::Device,
    ) -> Result<Self, Box<dyn Error + Send + Sync>> {
        let llm_type = config.precision_of(Some(Role::LanguageModel));
        let model = load_llava_hf::<B>(dir, llm_type.on::<B>(dev)?)?;
        let projector = (model.projector().clone(), model.image_token_id());
        Ok(Self {
            vision: model.vision().clone(),
            llm: model.language_model().clone(),
            tower: llava_vision_tower(dir)?,
            llm_dir: dir.to_path_buf(),
            projector: Some(projector),
        })
    }
}

/// The token `id` of `tokenizer` (a LLaVA folder's image token), which prompts then use for
/// their image placeholders.
fn image_token_of(tokenizer: &Tokenizer, id: u32) -> Result<String, Box<dyn Error + Send + Sync>> {
    tokenizer.inner().id_to_token(id).ok_or_else(|| {
        format!(
            "the image token id {id} is not in {}",
            tokenizer.path().display()
        )
        .into()
    })
}
