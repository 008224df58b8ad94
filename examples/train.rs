//! Train a LLaVA-style model on a prepared manifest (the seed's `train.sh`): a frozen vision
//! tower, an MLP projector at its own learning rate, and LoRA adapters on the language model
//! (or the projector alone, or the whole language model).
//!
//! ```sh
//! cargo run --release --example train -- \
//!     --manifest data/prepared/train.jsonl --image-root ~/data/coco \
//!     --llm ~/models/qwen2.5-0.5b --vision ~/models/clip-vit-large-patch14-336 \
//!     --output_dir runs/llava-qwen --lora_rank 128 --lora_alpha 32 --lora_dropout 0.1 \
//!     --target_modules 'q_proj|k_proj|v_proj|o_proj' --per_device_train_batch_size 4 \
//!     --gradient_accumulation_steps 8 --num_train_epochs 1 --learning_rate 1e-4 \
//!     --feature_proj_lr 1e-3 --save_steps 500 --save_total_limit 3
//! # after an interruption, the same command with --resume (or --resume runs/.../checkpoint-500)
//! ```
//!
//! Data-parallel (README, "Distributed training"): `--devices cuda:0,cuda:1` trains one peer
//! per device on this machine; on several machines, every node runs the same command with
//! `--num_nodes N --node_rank R --coordinator HOST:PORT` (node 0 runs the coordinator and
//! writes checkpoints). `--per_device_train_batch_size` is per peer: the global batch is
//! peers x per-device batch x accumulation.
//!
//! Settings come from `--config train.toml` (every key of `vlm_train::TrainConfig`), then the
//! `--flags`, spelt as transformers' `TrainingArguments`. Every checkpoint
//! `output_dir/checkpoint-N/` holds the trainer's state (exact resume) and, under `model/`,
//! the `vlm-model` checkpoint: `projector.safetensors`, `vlm_config.json`, the tokenizer
//! trained with (`tokenizer.json`, which `chat`, `serve` and `eval` load when given no
//! `--tokenizer`) and the PEFT adapter (`adapter/`) or, when the whole LLM trains, the merged
//! language model (`language_model/`). `--llm`, `--vision` and `--tokenizer` also take
//! Hugging Face hub ids (`Qwen/Qwen2.5-0.5B-Instruct`), found in the local cache.

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use vlm::backend::{device, device_named, Train};
use vlm::data::{ChatTemplate, Dataset, EncoderConfig, LoaderOptions, SampleEncoder, Tokenizer};
use vlm::hf::resolve_model_path;
use vlm::image::ImageProcessor;
use vlm::lora::LoraConfig;
use vlm::model::{
    ChatTemplateConfig, ProjectorKind, QwenVlm, StagedCheckpoint, VisionLanguageModel, VisionTower,
    VisionTowerConfig, VlmConfig, TOKENIZER_FILE,
};
use vlm::qwen::QwenModel;
use vlm::train::{
    attach_lora, run_local_peers, DatasetSource, Peer, Resume, TrainArgs, TrainBatch, TrainConfig,
    TrainError, TrainMode, Trainer,
};
use vlm::vision::{FeatureSelection, SelectStrategy, VisionEncoder};

#[derive(Parser)]
#[command(about = "Train a vision-language model on a prepared manifest")]
struct Args {
    /// The prepared manifest: JSONL, one conversation per line (see `prepare_data`).
    #[arg(long)]
    manifest: PathBuf,
    /// Folder the manifest's relative image paths start from (default: the manifest's).
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// Hugging Face folder of the base language model (Qwen v1, Qwen2/2.5 or Qwen3), or its
    /// hub id ORG/NAME[@REVISION] (from the local Hugging Face cache, downloaded when missing
    /// unless HF_HUB_OFFLINE is set; a local path that exists always wins).
    #[arg(long, value_parser = resolve_model_path)]
    llm: PathBuf,
    /// Hugging Face folder (or hub id) of the vision tower (CLIP or SigLIP).
    #[arg(long, value_parser = resolve_model_path)]
    vision: PathBuf,
    /// Key prefix of the tower's weights [default: found from the file's keys, in any layout
    /// transformers 4 or 5 saves].
    #[arg(long, value_name = "PREFIX")]
    vision_prefix: Option<String>,
    /// LLaVA's vision_feature_layer.
    #[arg(long, default_value_t = -2, allow_negative_numbers = true)]
    vision_feature_layer: i64,
    /// LLaVA's vision_feature_select_strategy: `default` (drop CLS) or `full`.
    #[arg(long, default_value = "default")]
    vision_feature_select_strategy: String,
    /// tokenizer.json, a folder holding one, or a hub id (default: the LLM folder's). Every
    /// checkpoint carries a copy, which later programs load by default.
    #[arg(long, value_parser = resolve_model_path)]
    tokenizer: Option<PathBuf>,
    /// System prompt (default: the seed's).
    #[arg(long)]
    system_prompt: Option<String>,
    /// Longest training sequence, image tokens included.
    #[arg(long, default_value_t = 2048)]
    max_len: usize,
    /// Data loader worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// A TOML file of training settings; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Resume from the latest checkpoint of output_dir (`--resume`) or from a folder.
    #[arg(long, num_args = 0..=1, default_missing_value = "latest")]
    resume: Option<String>,
    #[command(flatten)]
    train: TrainArgs,
}

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args = Args::parse();
    let config = match &args.config {
        Some(path) => TrainConfig::from_toml_file(path)?,
        None => TrainConfig::default(),
    }
    .with_args(&args.train)?;
    if config.train_vision {
        return Err(
            "train_vision: this program exports checkpoints that load the vision tower \
                    from its original folder, so it cannot train it; use mode projector, lora \
                    or full"
                .into(),
        );
    }
    let peers = Peer::local_peers(&config)?;
    let summaries = run_local_peers(peers, |peer| train_peer(&args, &config, peer))?;
    for summary in summaries.iter().flatten() {
        println!("{summary}");
    }
    Ok(())
}

/// Trains as data-parallel `peer` (the only one without `--devices` / `--num_nodes`): loads
/// the model on the peer's device and reads the peer's shard of every global batch. The
/// main peer's summary line comes back.
fn train_peer(
    args: &Args,
    config: &TrainConfig,
    peer: Peer,
) -> Result<Option<String>, Box<dyn Error + Send + Sync>> {
    let config = config.clone();
    let dev = match &peer.device {
        Some(name) => device_named(name)?,
        None => device(),
    };
    let main = peer.is_main();
    let llm_dir = absolute(&args.llm)?;
    let vision_dir = absolute(&args.vision)?;

    let strategy = match args.vision_feature_select_strategy.as_str() {
        "default" => SelectStrategy::Default,
        "full" => SelectStrategy::Full,
        other => return Err(format!("unknown vision_feature_select_strategy {other:?}").into()),
    };
    let selection = FeatureSelection {
        layer: args.vision_feature_layer,
        strategy,
    };
    let vision =
        VisionTower::<Train>::load(&vision_dir, args.vision_prefix.as_deref(), selection, &dev)?;
    let (llm, lora) = attach_lora(QwenModel::<Train>::load(&llm_dir, &dev)?, &config)?;
    let lora = lora.map(|lora| lora.with_base_model(llm_dir.display().to_string()));

    let tokenizer = Tokenizer::from_path(args.tokenizer.as_ref().unwrap_or(&llm_dir))?;
    let tokenizer_file = absolute(tokenizer.path())?;
    let template = match &args.system_prompt {
        Some(system) => ChatTemplate::new(system.clone()),
        None => ChatTemplate::default(),
    };
    let system_prompt = template.system().map(str::to_string);
    let images = ImageProcessor::new(vision.preprocessing().clone());
    let encoder = SampleEncoder::new(
        tokenizer,
        template,
        EncoderConfig::new(vision.tokens_per_image(), args.max_len),
    )?;
    let image_token_id = encoder.image_token_id();
    let kind = ProjectorKind::Mlp2xGelu;
    let model = VisionLanguageModel::with_new_projector(vision, kind, llm, image_token_id, &dev)?;

    let image_root = match &args.image_root {
        Some(root) => root.clone(),
        None => args
            .manifest
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf(),
    };
    let mut options = LoaderOptions::new(config.per_device_train_batch_size * peer.world);
    options.seed = config.seed;
    if let Some(workers) = args.workers {
        options.workers = workers;
    }
    let dataset = Dataset::open(&args.manifest, &image_root, encoder, images, options)?;
    if main {
        println!(
            "{} records in {}; mode {:?}; {} peer(s); output {}",
            dataset.len(),
            args.manifest.display(),
            config.mode,
            peer.world,
            config.output_dir.display()
        );
    }
    let mut data = DatasetSource::new(dataset).with_shard(peer.rank, peer.world);

    let tower = VisionTowerConfig {
        path: vision_dir.clone(),
        weight_prefix: args.vision_prefix.clone(),
        feature_layer: args.vision_feature_layer,
        feature_strategy: strategy,
    };
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt,
    };
    let recorded = Recorded {
        mode: config.mode,
        llm_dir,
        tower,
        template,
        lora,
        tokenizer: tokenizer_file,
    };
    let export = |model: &QwenVlm<Train>, dir: &Path| export_checkpoint(model, dir, &recorded);
    let resume = match args.resume.as_deref() {
        None => Resume::No,
        Some("latest") => Resume::Latest,
        Some(dir) => Resume::From(PathBuf::from(dir)),
    };
    let loss = |m: &QwenVlm<Train>, b: TrainBatch<Train>| Ok(m.forward_loss(b.inputs, b.labels)?.1);
    let outcome = Trainer::new(config, dev, loss)?
        .with_export(export)
        .with_peer(peer)
        .fit(model, &mut data, resume)?;
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

fn absolute(path: &Path) -> Result<PathBuf, Box<dyn Error + Send + Sync>> {
    Ok(std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// What every exported checkpoint records besides the trained weights.
struct Recorded {
    /// What trains: decides whether the checkpoint holds an adapter or a merged LLM.
    mode: TrainMode,
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
fn export_checkpoint(
    model: &QwenVlm<Train>,
    dir: &Path,
    recorded: &Recorded,
) -> Result<(), TrainError> {
    let destination = dir.join("model");
    let failed = |e: &dyn std::fmt::Display| TrainError::Checkpoint {
        path: destination.clone(),
        reason: e.to_string(),
    };
    let language_model = match recorded.mode {
        TrainMode::Full => PathBuf::from("language_model"),
        _ => recorded.llm_dir.clone(),
    };
    let (tower, template) = (recorded.tower.clone(), recorded.template.clone());
    let mut config = VlmConfig::for_model(model, language_model, tower, template);
    config.tokenizer = Some(PathBuf::from(TOKENIZER_FILE));
    let staged = StagedCheckpoint::with_lora(&destination, model, &config, recorded.lora.as_ref())?;
    let tokenizer_copy = staged.path().join(TOKENIZER_FILE);
    std::fs::copy(&recorded.tokenizer, &tokenizer_copy).map_err(|e| {
        failed(&format!(
            "cannot copy the tokenizer {}: {e}",
            recorded.tokenizer.display()
        ))
    })?;
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
