//! `vlm_config.json`: what a checkpoint needs besides its weights to rebuild the model.

use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};
use vlm_hf::Precision;
use vlm_vision::{FeatureSelection, SelectStrategy, VisionEncoder};

use crate::{LanguageModel, ModelError, PersistentProjector, ProjectorConfig, VisionLanguageModel};

/// The description of a checkpoint: where the frozen parts come from, how images appear in
/// prompts, which projector was trained and how prompts are templated.
///
/// Relative paths are resolved against the checkpoint folder (so a folder holding its base
/// models travels as one); absolute paths are used as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VlmConfig {
    /// Hugging Face folder of the base language model (`config.json` + safetensors), or a
    /// LLaVA checkpoint whose language model is used (see [`load_language_model`]).
    ///
    /// [`load_language_model`]: crate::load_language_model
    pub language_model: PathBuf,
    /// Where the vision tower comes from and which of its features are used.
    pub vision_tower: VisionTowerConfig,
    /// The placeholder token id that marks image tokens in prompts.
    pub image_token_id: u32,
    /// Placeholder tokens per image (checked against the model when loading).
    pub tokens_per_image: usize,
    /// The projector's kind and widths; its weights are `projector.safetensors`.
    pub projector: ProjectorConfig,
    /// The chat template prompts were trained with.
    pub chat_template: ChatTemplateConfig,
    /// A subfolder of the checkpoint holding a PEFT adapter for the language model
    /// (`adapter_config.json` + `adapter_model.safetensors`), loaded over the base model.
    /// Saving a model whose language model carries LoRA adapters writes them there (to
    /// `adapter` when this is unset) and records it; a checkpoint naming a folder that is
    /// missing does not load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<PathBuf>,
    /// The `tokenizer.json` the model was trained with, which programs load when they are
    /// given no tokenizer. Writers copy it into the checkpoint ([`TOKENIZER_FILE`]) and record
    /// that relative path, so the checkpoint travels as one folder; a checkpoint that
    /// records none (written before this field) uses its language model folder's.
    ///
    /// [`TOKENIZER_FILE`]: crate::TOKENIZER_FILE
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    /// The float type the model ran in while it trained (`train --dtype`: its frozen
    /// weights' type; what trained was f32), which [`load_checkpoint`] loads it in when the
    /// caller asks for no type; absent: f32. Another value than `f32`, `bf16` or `f16` is an
    /// error naming `dtype` and the file.
    ///
    /// [`load_checkpoint`]: crate::load_checkpoint
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<Precision>,
}

/// The vision tower of a checkpoint: a Hugging Face folder and LLaVA's feature selection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisionTowerConfig {
    /// Folder of a CLIP or SigLIP vision model, dual-tower model or LLaVA checkpoint.
    pub path: PathBuf,
    /// Key prefix of the tower's weights (`vision_model`, `vision_tower.vision_model`, ...);
    /// `None`: found from the file's keys, whatever layout transformers saved it in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_prefix: Option<String>,
    /// LLaVA's `vision_feature_layer` (-2: the penultimate layer).
    #[serde(rename = "vision_feature_layer")]
    pub feature_layer: i64,
    /// LLaVA's `vision_feature_select_strategy` (`default` drops CLIP's CLS token).
    #[serde(rename = "vision_feature_select_strategy")]
    pub feature_strategy: SelectStrategy,
}

/// The chat template of a checkpoint, by name, with its system prompt.
///
/// Programs prompt a checkpoint with the template it names and refuse one whose name they do
/// not implement, rather than prompt it in another format than it was trained with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTemplateConfig {
    /// Template name: [`CHATML`](Self::CHATML), the one `vlm-data`'s `ChatTemplate` writes.
    pub name: String,
    /// The system prompt used in training, if any.
    #[serde(default)]
    pub system_prompt: Option<String>,
}

impl ChatTemplateConfig {
    /// The name of the ChatML template (Qwen's `<|im_start|>role ... <|im_end|>`).
    pub const CHATML: &'static str = "chatml";

    /// The ChatML template with `system_prompt`.
    pub fn chatml(system_prompt: Option<String>) -> Self {
        Self {
            name: Self::CHATML.to_string(),
            system_prompt,
        }
    }
}

impl VisionTowerConfig {
    /// A CLIP, SigLIP or LLaVA folder (key layout found on load) with LLaVA's feature
    /// selection.
    pub fn new(path: impl Into<PathBuf>, selection: FeatureSelection) -> Self {
        Self {
            path: path.into(),
            weight_prefix: None,
            feature_layer: selection.layer,
            feature_strategy: selection.strategy,
        }
    }

    /// The feature selection to build the tower with.
    pub fn selection(&self) -> FeatureSelection {
        FeatureSelection {
            layer: self.feature_layer,
            strategy: self.feature_strategy,
        }
    }
}

impl VlmConfig {
    /// The config of `model`: projector, placeholder id and image token count read from
    /// it, the sources of its frozen parts and the chat template given.
    pub fn for_model<B, E, P, L>(
        model: &VisionLanguageModel<B, E, P, L>,
        language_model: PathBuf,
        vision_tower: VisionTowerConfig,
        chat_template: ChatTemplateConfig,
    ) -> Self
    where
        B: Backend,
        E: VisionEncoder<B>,
        P: PersistentProjector<B>,
        L: LanguageModel<B>,
    {
        Self {
            language_model,
            vision_tower,
            image_token_id: model.image_token_id(),
            tokens_per_image: model.tokens_per_image(),
            projector: model.projector().config(),
            chat_template,
            adapter: None,
            tokenizer: None,
            dtype: None,
        }
    }

    /// Checks that this config describes `model`; `path` names the config in the error.
    pub(crate) fn check_matches<B, E, P, L>(
        &self,
        model: &VisionLanguageModel<B, E, P, L>,
        path: &Path,
    ) -> Result<(), ModelError>
    where
        B: Backend,
        E: VisionEncoder<B>,
        P: PersistentProjector<B>,
        L: LanguageModel<B>,
    {
        let mismatch = |field, in_config: String, in_model: String| ModelError::ConfigMismatch {
            path: path.to_path_buf(),
            field,
            in_config,
            in_model,
        };
        if self.image_token_id != model.image_token_id() {
            let (config, model) = (self.image_token_id, model.image_token_id());
            return Err(mismatch(
                "image_token_id",
                config.to_string(),
                model.to_string(),
            ));
        }
        if self.tokens_per_image != model.tokens_per_image() {
            let (config, model) = (self.tokens_per_image, model.tokens_per_image());
            return Err(mismatch(
                "tokens_per_image",
                config.to_string(),
                model.to_string(),
            ));
        }
        let projector = model.projector().config();
        if self.projector != projector {
            return Err(mismatch(
                "projector",
                format!("{:?}", self.projector),
                format!("{projector:?}"),
            ));
        }
        Ok(())
    }
}
