//! The model flags every program that runs a VLM shares (`chat`, `serve`, `eval`, `merge`),
//! and loading the model and tokenizer they name; `--dtype` ([`PrecisionArgs`]), which
//! `forward` shares too.
//!
//! One place decides what `--checkpoint`, `--llava`, `--llm`, `--vision` and `--tokenizer`
//! mean, so the programs cannot drift apart: the same flags load the same model, and with no
//! model flag they all fall back to the quickstart's checkpoint
//! ([`QUICKSTART_CHECKPOINT`]) when it exists. Every one of them also takes a Hugging Face
//! hub id, `ORG/NAME[@REVISION]`, resolved as it parses by [`vlm_hf::resolve_model_path`]
//! (the local Hugging Face cache, downloaded when missing unless `HF_HUB_OFFLINE` is set; a
//! local path that exists always wins).

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::TensorCreationOptions;
use vlm_data::{
    ChatTemplate, EncoderConfig, EncoderError, SampleEncoder, Tokenizer, TokenizerError,
};
use vlm_hf::{read_config, resolve_model_path, HfError, HubError, Precision, WeightStore};
use vlm_model::{
    load_checkpoint, load_llava_hf, ChatTemplateConfig, ModelError, QwenVlm, VlmConfig, CONFIG_FILE,
};
use vlm_train::checkpoint::MODEL_DIR;

/// Where `cargo run --release --example quickstart` leaves its trained checkpoint (relative to
/// the working directory): the model the programs use when no model flag is given.
pub const QUICKSTART_CHECKPOINT: &str = "target/quickstart/model/checkpoint";

/// Why `--checkpoint` names no model folder.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointPathError {
    /// The hub id could not be resolved.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The folder is none of the three kinds `--checkpoint` accepts.
    #[error(
        "{} holds no model: expected a model folder (with {CONFIG_FILE}), a training \
         checkpoint (checkpoint-N, with {MODEL_DIR}/{CONFIG_FILE}) or a run \
         folder (with a complete checkpoint-N){hint}",
        dir.display()
    )]
    NoModel {
        /// The folder as given.
        dir: PathBuf,
        /// What was found instead, when that says more.
        hint: String,
    },
}

/// The model folder `--checkpoint TEXT` names, for clap's `value_parser`: TEXT (a path or a
/// hub id, see [`resolve_model_path`]) when it holds `vlm_config.json`, else its `model/`
/// subfolder (a training checkpoint, `run/checkpoint-60`), else the model of its latest
/// complete checkpoint (a training run's output folder).
pub fn checkpoint_path(text: &str) -> Result<PathBuf, CheckpointPathError> {
    let dir = resolve_model_path(text)?;
    let is_model = |d: &Path| d.join(CONFIG_FILE).is_file();
    let in_checkpoint = |d: &Path| d.join(MODEL_DIR);
    if is_model(&dir) {
        return Ok(dir);
    }
    if is_model(&in_checkpoint(&dir)) {
        return Ok(in_checkpoint(&dir));
    }
    let latest = vlm_train::latest_checkpoint(&dir).map(|c| in_checkpoint(&c));
    match latest {
        Some(model) if is_model(&model) => Ok(model),
        _ => Err(CheckpointPathError::NoModel {
            hint: no_model_hint(&dir),
            dir,
        }),
    }
}

/// Why a folder given to `--checkpoint` is no model, when more can be said than the kinds.
fn no_model_hint(dir: &Path) -> String {
    if !dir.exists() {
        return ": it does not exist".into();
    }
    match vlm_train::list_checkpoints(dir).last() {
        Some((step, path)) => format!(
            "; its latest checkpoint, step {step} ({}), has no {MODEL_DIR}/{CONFIG_FILE}",
            path.display()
        ),
        None => String::new(),
    }
}

/// `--dtype`: the float type a program loads and runs its model in, to
/// `#[command(flatten)]` into its arguments.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct PrecisionArgs {
    /// Float type to load the weights in and compute in: f32, bf16 or f16. bf16 and f16
    /// halve the weights' memory (norms, softmax and the loss stay in f32, as in
    /// transformers); logits then differ from f32 by the type's rounding (BENCHMARKS.md,
    /// "Half precision"). The ndarray backend has no half types and refuses them
    /// [default: the type a checkpoint records (`dtype` in its vlm_config.json, what
    /// `train --dtype` trained it in); else, on the GPU builds, the type the language model
    /// is stored in (bf16 for most Hub checkpoints); else f32].
    #[arg(long = "dtype", value_name = "DTYPE")]
    pub precision: Option<Precision>,
}

impl PrecisionArgs {
    /// Where and how the model's tensors are created on `device` (see [`Precision::on`]):
    /// an error when this build's backend cannot compute in the precision. Without
    /// `--dtype`, options naming no type: loaders then use the type a checkpoint records
    /// ([`vlm_model::load_checkpoint`]), else the default f32.
    pub fn on<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<burn::tensor::TensorCreationOptions<B>, HfError> {
        match self.precision {
            Some(precision) => precision.on::<B>(device),
            None => Ok(burn::tensor::TensorCreationOptions::new(device.clone())),
        }
    }
}

/// The precision a model whose language model weights are in the folder `weights` loads in
/// without `--dtype`: the type they are stored in when this build's backend computes it
/// natively ([`NATIVE_HALF`](crate::backend::NATIVE_HALF), the GPU builds, and the device
/// supports it), else f32 ([`Precision::default_for`]). Unreadable weights say nothing (f32):
/// loading them reports the error.
pub fn default_precision<B: Backend>(weights: &Path, device: &B::Device) -> Precision {
    let stored = WeightStore::open_dir(weights).ok();
    let stored = stored.and_then(|store| store.stored_precision());
    Precision::default_for::<B>(stored, device, crate::backend::NATIVE_HALF)
}

/// The flags that choose a model, to `#[command(flatten)]` into a program's arguments.
///
/// The model: `--checkpoint DIR` (a vlm checkpoint; its `vlm_config.json` names the language
/// model and vision tower, which `--llm` and `--vision`, when given, must match) or
/// `--llava DIR` (a Hugging Face LLaVA folder); with neither (and no `--llm`), the
/// quickstart's checkpoint ([`quickstart_checkpoint`]). Each flag takes a local path or a
/// hub id `ORG/NAME[@REVISION]`, already resolved to its cache folder once parsed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelArgs {
    /// Hugging Face folder (or hub id ORG/NAME[@REV]) of the base language model (where the
    /// tokenizer is looked for); with --checkpoint it must be the one the checkpoint names.
    #[arg(long, value_name = "DIR", value_parser = resolve_model_path)]
    pub llm: Option<PathBuf>,

    /// Vision tower folder (or hub id); with --checkpoint it must be the one the checkpoint
    /// names.
    #[arg(long, value_name = "DIR", value_parser = resolve_model_path)]
    pub vision: Option<PathBuf>,

    /// A vlm checkpoint folder (vlm_config.json, projector.safetensors, adapter/) or hub id,
    /// a training checkpoint (run/checkpoint-N: its model/) or a training run's folder (its
    /// latest complete checkpoint) [default: target/quickstart/model/checkpoint when no model
    /// flag is given].
    #[arg(long, value_name = "DIR", conflicts_with = "llava", value_parser = checkpoint_path)]
    pub checkpoint: Option<PathBuf>,

    /// A Hugging Face LLaVA folder (LlavaForConditionalGeneration) with a Qwen LLM, or its hub
    /// id.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["llm", "vision"],
        value_parser = resolve_model_path
    )]
    pub llava: Option<PathBuf>,

    /// tokenizer.json, a folder holding one, or a hub id [default: the one the checkpoint
    /// records, else the language model folder's]. Its ids must be inside the model's
    /// vocabulary.
    #[arg(long, value_name = "PATH", value_parser = resolve_model_path)]
    pub tokenizer: Option<PathBuf>,

    /// The float type the model is loaded and run in.
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// A model ready to run: the VLM, its tokenizer and the system prompt it was trained with.
pub struct LoadedModel<B: Backend> {
    /// The vision-language model.
    pub model: QwenVlm<B>,
    /// `--tokenizer`, else the checkpoint's recorded tokenizer, else the language model
    /// folder's `tokenizer.json`.
    pub tokenizer: Tokenizer,
    /// The checkpoint's system prompt (none for a LLaVA folder).
    pub system_prompt: Option<String>,
}

/// Why the model flags did not give a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The flags do not name a model, or contradict the checkpoint.
    #[error("{0} (see --help)")]
    Usage(String),
    /// The tokenizer could not be read.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The model failed to load.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The checkpoint was trained with a chat template the programs do not write.
    #[error(
        "{} names the chat template `{name}`; the programs write only `{}`",
        path.display(),
        ChatTemplateConfig::CHATML
    )]
    UnknownChatTemplate {
        /// The checkpoint's config file.
        path: PathBuf,
        /// The template it names.
        name: String,
    },
}

/// What loading the model found besides it: where its tokenizer may be and its system
/// prompt.
struct ModelSources {
    /// The language model folder (whose `tokenizer.json` is the last resort).
    llm_dir: PathBuf,
    /// The tokenizer the checkpoint records, resolved against its folder.
    recorded_tokenizer: Option<PathBuf>,
    /// The checkpoint's system prompt.
    system_prompt: Option<String>,
}

impl ModelArgs {
    /// Loads the model (in `--dtype`) and its tokenizer on `device`. The tokenizer:
    /// `--tokenizer` (a file, or a folder holding `tokenizer.json`), else the one the
    /// checkpoint records, else the language model folder's `tokenizer.json`.
    pub fn load<B: Backend>(&self, device: &B::Device) -> Result<LoadedModel<B>, LoadError> {
        let (model, sources) = self.load_model(device)?;
        let tokenizer = match (&self.tokenizer, &sources.recorded_tokenizer) {
            (Some(path), _) => Tokenizer::from_path(path)?,
            (None, Some(file)) => Tokenizer::from_file(file)?,
            (None, None) => Tokenizer::from_model_dir(&sources.llm_dir)?,
        };
        Ok(LoadedModel {
            model,
            tokenizer,
            system_prompt: sources.system_prompt,
        })
    }

    /// The model, with where its tokenizer may be and the checkpoint's system prompt.
    fn load_model<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<(QwenVlm<B>, ModelSources), LoadError> {
        if let Some(dir) = &self.llava {
            let sources = ModelSources {
                llm_dir: self.llm.clone().unwrap_or_else(|| dir.clone()),
                recorded_tokenizer: None,
                system_prompt: None,
            };
            let options = self.options::<B>(Some(dir), device)?;
            return Ok((load_llava_hf::<B>(dir, options)?, sources));
        }
        let dir = self.checkpoint_dir()?;
        let recorded: VlmConfig = read_config(dir.join(CONFIG_FILE)).map_err(ModelError::from)?;
        // A checkpoint recording the type it trained in loads in it (`load_checkpoint`).
        let stored_in = recorded
            .dtype
            .is_none()
            .then(|| dir.join(&recorded.language_model));
        let options = self.options::<B>(stored_in.as_deref(), device)?;
        let (model, config) = load_checkpoint::<B>(&dir, options)?;
        check_template(&config.chat_template, &dir.join(CONFIG_FILE))?;
        let named_llm = dir.join(&config.language_model);
        let named_vision = dir.join(&config.vision_tower.path);
        check_named("--llm", self.llm.as_deref(), &named_llm)?;
        check_named("--vision", self.vision.as_deref(), &named_vision)?;
        let sources = ModelSources {
            llm_dir: named_llm,
            recorded_tokenizer: config.tokenizer.map(|file| dir.join(file)),
            system_prompt: config.chat_template.system_prompt,
        };
        Ok((model, sources))
    }

    /// Where and how the model's tensors are created: in `--dtype`; without it, in the type
    /// the language model weights in `stored_in` are stored in on a GPU build
    /// ([`default_precision`]), else in no set type (f32, or what a checkpoint records).
    fn options<B: Backend>(
        &self,
        stored_in: Option<&Path>,
        device: &B::Device,
    ) -> Result<TensorCreationOptions<B>, LoadError> {
        let options = match (self.precision.precision, stored_in) {
            (None, Some(weights)) => default_precision::<B>(weights, device).on::<B>(device),
            _ => self.precision.on::<B>(device),
        };
        Ok(options.map_err(ModelError::from)?)
    }

    /// The checkpoint to load: `--checkpoint`, else (without `--llm`) the quickstart's.
    fn checkpoint_dir(&self) -> Result<PathBuf, LoadError> {
        match (&self.checkpoint, &self.llm) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(_)) => Err(LoadError::Usage(
                "--llm needs --checkpoint DIR (or give --llava DIR)".into(),
            )),
            (None, None) => quickstart_checkpoint().ok_or_else(|| {
                LoadError::Usage(format!(
                    "no model: run `cargo run --release --example quickstart` first (it writes \
                     {QUICKSTART_CHECKPOINT}, the default model), or give --checkpoint DIR or \
                     --llava DIR"
                ))
            }),
        }
    }
}

impl<B: Backend> LoadedModel<B> {
    /// The size of the language model's vocabulary: every prompt id must be below it.
    pub fn vocab_size(&self) -> usize {
        self.model.language_model().config().vocab_size
    }

    /// The ids that end an answer ([`stop_token_ids`] of the model's tokenizer).
    pub fn stop_token_ids(&self) -> Vec<u32> {
        stop_token_ids(&self.tokenizer, self.vocab_size())
    }

    /// The checkpoint's chat template, with `system` as the system prompt when given, else
    /// the checkpoint's (none for a LLaVA folder).
    pub fn chat_template(&self, system: Option<String>) -> ChatTemplate {
        match system.or_else(|| self.system_prompt.clone()) {
            Some(system) => ChatTemplate::new(system),
            None => ChatTemplate::without_system(),
        }
    }

    /// The encoder of this model's prompts with `template`: an image becomes the model's run
    /// of placeholder ids, and nothing is truncated (the context limit is the program's).
    pub fn prompt_encoder(&self, template: ChatTemplate) -> Result<SampleEncoder, EncoderError> {
        let mut config = EncoderConfig::new(self.model.tokens_per_image(), usize::MAX);
        let image_token = self.model.image_token_id();
        if let Some(name) = self.tokenizer.inner().id_to_token(image_token) {
            config.image_token = name;
        }
        SampleEncoder::new(self.tokenizer.clone(), template, config)
    }
}

/// Fails when a checkpoint names a chat template other than the one the programs write.
fn check_template(template: &ChatTemplateConfig, path: &Path) -> Result<(), LoadError> {
    if template.name == ChatTemplateConfig::CHATML {
        return Ok(());
    }
    Err(LoadError::UnknownChatTemplate {
        path: path.to_path_buf(),
        name: template.name.clone(),
    })
}

/// The quickstart's checkpoint folder under the working directory, else under the
/// repository (where `cargo run` from the repository writes it), when it exists.
pub fn quickstart_checkpoint() -> Option<PathBuf> {
    let relative = Path::new(QUICKSTART_CHECKPOINT);
    let in_repository = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    [relative.to_path_buf(), in_repository]
        .into_iter()
        .find(|dir| dir.is_dir())
}

/// Fails when a flag names another folder than the checkpoint does.
fn check_named(flag: &str, given: Option<&Path>, named: &Path) -> Result<(), LoadError> {
    match given {
        Some(given) if !same_dir(given, named) => Err(LoadError::Usage(format!(
            "{flag} {} is not the folder the checkpoint names: {}",
            given.display(),
            named.display()
        ))),
        _ => Ok(()),
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The ids that end an answer: the tokenizer's `<|im_end|>` and `<|endoftext|>`, those inside
/// a vocabulary of `vocab_size`.
pub fn stop_token_ids(tokenizer: &Tokenizer, vocab_size: usize) -> Vec<u32> {
    ["<|im_end|>", "<|endoftext|>"]
        .into_iter()
        .filter_map(|name| tokenizer.token_id(name).ok())
        .filter(|&id| (id as usize) < vocab_size)
        .collect()
}
