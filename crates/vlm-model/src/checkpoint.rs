//! Checkpoints: what training changes, in standard formats, written atomically.
//!
//! A checkpoint folder holds `vlm_config.json` ([`VlmConfig`]), `projector.safetensors`
//! (llava-hf names, Hugging Face `[out, in]` layout, f32) and, when the language model carries
//! LoRA adapters, a PEFT adapter folder (`adapter/` unless the config names another, recorded
//! in the config's `adapter`); the frozen vision tower and base language model stay in their
//! own Hugging Face folders, which the config names.

use std::path::{Component, Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::TensorCreationOptions;
use vlm_hf::{read_config, write_json, SafetensorsWriter, StagedDir, WeightStore};
use vlm_lora::LoraConfig;
use vlm_qwen::QwenModel;
use vlm_vision::VisionEncoder;

use crate::{
    load_language_model, AnyProjector, LanguageModel, ModelError, PersistentProjector,
    ProjectorConfig, VisionLanguageModel, VisionTower, VlmConfig,
};

/// File name of the checkpoint's config.
pub const CONFIG_FILE: &str = "vlm_config.json";
/// File name of the checkpoint's projector weights.
pub const PROJECTOR_FILE: &str = "projector.safetensors";
/// Name of the checkpoint's LoRA adapter folder when the config names none.
pub const ADAPTER_DIR: &str = "adapter";
/// File name of the tokenizer a checkpoint carries (recorded in [`VlmConfig::tokenizer`]).
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Name prefix of the hidden folder a checkpoint is staged in beside its destination.
const STAGING_PREFIX: &str = ".vlm-checkpoint-";

/// The model a checkpoint loads into: a CLIP or SigLIP tower, any projector of this crate
/// and a Qwen language model.
pub type QwenVlm<B> = VisionLanguageModel<B, VisionTower<B>, AnyProjector<B>, QwenModel<B>>;

/// A checkpoint being written: a hidden temporary folder next to its destination that
/// becomes the destination only on [`commit`](Self::commit), so a crash or an error never
/// leaves a half-written checkpoint under the destination's name.
///
/// [`new`](Self::new) writes the config, the projector and the language model's LoRA adapters
/// when it carries any (a PEFT adapter folder, `adapter/` unless [`VlmConfig::adapter`] names
/// another; the written config records it). A model without adapters can still get an
/// adapter folder written by hand under [`path`](Self::path) before committing, for the
/// folder the config names. Dropping it without committing removes it.
#[derive(Debug)]
pub struct StagedCheckpoint {
    staging: StagedDir,
    adapter: Option<PathBuf>,
    tokenizer: Option<PathBuf>,
}

impl StagedCheckpoint {
    /// Stages a checkpoint of `model` described by `config` for `destination`; LoRA
    /// adapters of the language model are saved with a config inferred from them (see
    /// [`inferred_lora_config`](crate::inferred_lora_config)).
    ///
    /// Fails when `config` does not describe `model` (projector, placeholder id, image
    /// token count), names an adapter folder outside the checkpoint, or a file cannot be
    /// written.
    pub fn new<B, E, P, L>(
        destination: impl AsRef<Path>,
        model: &VisionLanguageModel<B, E, P, L>,
        config: &VlmConfig,
    ) -> Result<Self, ModelError>
    where
        B: Backend,
        E: VisionEncoder<B>,
        P: PersistentProjector<B>,
        L: LanguageModel<B>,
    {
        Self::with_lora(destination, model, config, None)
    }

    /// As [`new`](Self::new), saving the adapters with `lora`, the config they were applied
    /// with (so `adapter_config.json` keeps its targets as written). With `lora` given, a
    /// language model without adapters is an error.
    pub fn with_lora<B, E, P, L>(
        destination: impl AsRef<Path>,
        model: &VisionLanguageModel<B, E, P, L>,
        config: &VlmConfig,
        lora: Option<&LoraConfig>,
    ) -> Result<Self, ModelError>
    where
        B: Backend,
        E: VisionEncoder<B>,
        P: PersistentProjector<B>,
        L: LanguageModel<B>,
    {
        let destination = destination.as_ref().to_path_buf();
        config.check_matches(model, &destination)?;
        let adapter_dir = config
            .adapter
            .clone()
            .unwrap_or_else(|| PathBuf::from(ADAPTER_DIR));
        if !is_inside(&adapter_dir) {
            return Err(ModelError::Adapter {
                path: adapter_dir,
                reason: "must be a relative path inside the checkpoint folder",
            });
        }
        let staging = StagedDir::new(&destination, STAGING_PREFIX)?;
        projector_weights(model.projector()).write(&staging.path().join(PROJECTOR_FILE))?;
        let mut config = config.clone();
        let adapter_path = staging.path().join(&adapter_dir);
        if model
            .language_model()
            .save_lora_adapter(&adapter_path, lora)?
        {
            config.adapter = Some(adapter_dir);
        } else if lora.is_some() {
            return Err(ModelError::Adapter {
                path: destination.join(adapter_dir),
                reason: "a LoRA config was given but the language model carries no adapter",
            });
        }
        write_json(&staging.path().join(CONFIG_FILE), &config)?;
        Ok(Self {
            staging,
            adapter: config.adapter,
            tokenizer: config.tokenizer,
        })
    }

    /// The staging folder, to write further parts of the checkpoint into.
    pub fn path(&self) -> &Path {
        self.staging.path()
    }

    /// Moves the staged folder to the destination, replacing any previous checkpoint there,
    /// and returns the destination.
    ///
    /// Fails, leaving the destination as it was, when the config names an adapter folder
    /// that was not written into the staging folder, or a tokenizer file that is not there
    /// (a relative one is looked for in the staging folder: write it there before).
    pub fn commit(self) -> Result<PathBuf, ModelError> {
        let destination = self.staging.destination();
        if let Some(adapter) = &self.adapter {
            if !self.staging.path().join(adapter).is_dir() {
                return Err(ModelError::Adapter {
                    path: destination.join(adapter),
                    reason: "named in the config but not written into the staged checkpoint",
                });
            }
        }
        if let Some(tokenizer) = &self.tokenizer {
            if !self.staging.path().join(tokenizer).is_file() {
                return Err(ModelError::MissingTokenizer {
                    path: destination.join(tokenizer),
                });
            }
        }
        Ok(self.staging.commit()?)
    }
}

impl<B, E, P, L> VisionLanguageModel<B, E, P, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    P: PersistentProjector<B>,
    L: LanguageModel<B>,
{
    /// Writes this model's checkpoint (config, projector and, when the language model
    /// carries LoRA adapters, the PEFT adapter folder) to `dir` atomically; see
    /// [`StagedCheckpoint`].
    pub fn save_checkpoint(
        &self,
        dir: impl AsRef<Path>,
        config: &VlmConfig,
    ) -> Result<PathBuf, ModelError> {
        StagedCheckpoint::new(dir, self, config)?.commit()
    }

    /// As [`save_checkpoint`](Self::save_checkpoint), writing the adapters'
    /// `adapter_config.json` from `lora`, the config they were applied with.
    pub fn save_checkpoint_with_lora(
        &self,
        dir: impl AsRef<Path>,
        config: &VlmConfig,
        lora: &LoraConfig,
    ) -> Result<PathBuf, ModelError> {
        StagedCheckpoint::with_lora(dir, self, config, Some(lora))?.commit()
    }
}

/// Loads a checkpoint folder: its config, the vision tower and base language model it
/// names, its projector and, when the config names one, the LoRA adapter folder over the
/// language model (adapters unmerged and frozen, as [`vlm_lora::load_adapter`] leaves them).
///
/// Every part is created as `options` says; options without a dtype (a bare device) load
/// the model in the type the config records ([`VlmConfig::dtype`]: what it trained in), else
/// f32. A recorded half type the backend cannot compute in is an error.
///
/// A missing adapter folder, or one without `adapter_config.json`, is a
/// [`ModelError::Adapter`] naming it; a bad adapter file is a [`ModelError::Lora`].
///
/// Each missing file, missing tensor or wrong shape is an error naming the file (and key);
/// parts whose widths disagree are a [`ModelError::DimensionMismatch`] naming both.
pub fn load_checkpoint<B: Backend>(
    dir: impl AsRef<Path>,
    options: impl Into<TensorCreationOptions<B>>,
) -> Result<(QwenVlm<B>, VlmConfig), ModelError> {
    let dir = dir.as_ref();
    let options = options.into();
    let config_path = dir.join(CONFIG_FILE);
    let config: VlmConfig = read_config(&config_path)?;
    let options = match (options.dtype, config.dtype) {
        (None, Some(recorded)) => recorded.on::<B>(&options.device)?,
        _ => options,
    };
    let adapter_dir = match &config.adapter {
        Some(adapter) => Some(checked_adapter_dir(dir, adapter)?),
        None => None,
    };
    let projector_store = WeightStore::open_file(dir.join(PROJECTOR_FILE))?;
    let projector = AnyProjector::from_store(&projector_store, &config.projector, options.clone())?;
    let tower = &config.vision_tower;
    let vision = VisionTower::load(
        dir.join(&tower.path),
        tower.weight_prefix.as_deref(),
        tower.selection(),
        options.clone(),
    )?;
    let mut language_model = load_language_model(dir.join(&config.language_model), options)?;
    if let Some(adapter_dir) = adapter_dir {
        language_model = vlm_lora::load_adapter(language_model, adapter_dir)?;
    }
    let model = VisionLanguageModel::new(vision, projector, language_model, config.image_token_id)?;
    config.check_matches(&model, &config_path)?;
    Ok((model, config))
}

/// A projector trained elsewhere, to start from (LLaVA's `--pretrain_mm_mlp_adapter`: stage 2
/// from stage 1's projector): the weights of `path`, a [`PROJECTOR_FILE`], read by the name
/// table of the `expected` kind and widths. When a [`CONFIG_FILE`] lies beside it (a
/// checkpoint's), the projector it records must be `expected`.
///
/// Any mismatch, recorded or in the tensors (a missing key, a wrong shape), is a
/// [`ModelError::ProjectorMismatch`] naming the file, the projector needed and what differs.
pub fn load_projector<B: Backend>(
    path: &Path,
    expected: &ProjectorConfig,
    device: &B::Device,
) -> Result<AnyProjector<B>, ModelError> {
    let mismatch = |reason: String| ModelError::ProjectorMismatch {
        path: path.to_path_buf(),
        expected: *expected,
        reason,
    };
    let config_path = path.with_file_name(CONFIG_FILE);
    if config_path.is_file() {
        let recorded = read_config::<VlmConfig>(&config_path)?.projector;
        if recorded != *expected {
            return Err(mismatch(format!(
                "{} records a {recorded}",
                config_path.display()
            )));
        }
    }
    let store = WeightStore::open_file(path)?;
    AnyProjector::from_store(&store, expected, device).map_err(|e| mismatch(e.to_string()))
}

/// The adapter folder `adapter` of the checkpoint `dir`, checked to exist with its config.
fn checked_adapter_dir(dir: &Path, adapter: &Path) -> Result<PathBuf, ModelError> {
    let path = dir.join(adapter);
    let error = |reason| ModelError::Adapter {
        path: path.clone(),
        reason,
    };
    if !is_inside(adapter) {
        return Err(error(
            "must be a relative path inside the checkpoint folder",
        ));
    }
    if !path.is_dir() {
        return Err(error("named in vlm_config.json but missing"));
    }
    if !path.join("adapter_config.json").is_file() {
        return Err(error("holds no adapter_config.json"));
    }
    Ok(path)
}

/// Whether `path` is relative and stays inside the folder it is joined to.
fn is_inside(path: &Path) -> bool {
    let mut components = path.components().peekable();
    components.peek().is_some() && components.all(|c| matches!(c, Component::Normal(_)))
}

/// The projector's weights under llava-hf names, in Hugging Face `[out, in]` layout (f32).
fn projector_weights<B: Backend>(projector: &impl PersistentProjector<B>) -> SafetensorsWriter {
    let mut writer = SafetensorsWriter::new();
    for (name, data) in projector.hf_tensors() {
        writer.add_data(name, data);
    }
    writer
}
