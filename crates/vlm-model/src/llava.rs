//! Hugging Face LLaVA folders (`LlavaForConditionalGeneration`): the whole model, or only its
//! language model, loaded from one checkpoint.

use std::path::Path;

use burn::tensor::backend::Backend;
use serde::Deserialize;
use serde_json::Value;
use vlm_hf::{read_config, WeightStore};
use vlm_qwen::{QwenConfig, QwenModel};
use vlm_vision::{FeatureSelection, VisionEncoder};

use crate::{
    AnyProjector, MlpProjector, ModelError, QwenVlm, VisionLanguageModel, VisionTower,
    PROJECTOR_PREFIX,
};

/// The config file of a Hugging Face folder.
const HF_CONFIG: &str = "config.json";

/// The keys of a LLaVA `config.json` besides its `vision_config` and `text_config`, with
/// transformers' `LlavaConfig` defaults for absent ones.
#[derive(Deserialize)]
struct LlavaJson {
    #[serde(default = "default_image_token", alias = "image_token_id")]
    image_token_index: u32,
    #[serde(default = "default_projector_act")]
    projector_hidden_act: String,
    #[serde(default = "default_projector_bias")]
    multimodal_projector_bias: bool,
    #[serde(flatten)]
    selection: FeatureSelection,
}

fn default_image_token() -> u32 {
    32_000
}

fn default_projector_act() -> String {
    "gelu".to_string()
}

fn default_projector_bias() -> bool {
    true
}

impl LlavaJson {
    /// Refuses projectors other than LLaVA's `mlp2x_gelu` with biases.
    fn check(&self, path: &Path) -> Result<(), ModelError> {
        let unsupported = |reason: String| ModelError::UnsupportedLlava {
            path: path.to_path_buf(),
            reason,
        };
        if self.projector_hidden_act != "gelu" {
            return Err(unsupported(format!(
                "projector_hidden_act `{}` (only gelu)",
                self.projector_hidden_act
            )));
        }
        if !self.multimodal_projector_bias {
            return Err(unsupported(
                "multimodal_projector_bias false (only a projector with biases)".to_string(),
            ));
        }
        Ok(())
    }
}

/// Where a LLaVA checkpoint keeps its three parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlavaLayout {
    /// The llava-hf names: `vision_tower.vision_model.*`, `multi_modal_projector.*`,
    /// `language_model.model.*` and `language_model.lm_head.weight`. Checkpoints written before
    /// transformers 4.52 use them, and so does `save_pretrained` since (it reverts its module
    /// tree to these names).
    Legacy,
    /// The module tree of transformers 4.52 and later: `model.vision_tower.vision_model.*`,
    /// `model.multi_modal_projector.*`, `model.language_model.*` and `lm_head.weight`.
    Nested,
}

impl LlavaLayout {
    /// The layout of a checkpoint's weights: [`Nested`](Self::Nested) when any tensor is
    /// under `model.language_model.`, else [`Legacy`](Self::Legacy).
    pub fn detect(store: &WeightStore) -> Self {
        let nested = store
            .keys()
            .iter()
            .any(|key| key.starts_with("model.language_model."));
        if nested {
            Self::Nested
        } else {
            Self::Legacy
        }
    }

    /// Key prefix of the vision tower (the `weight_prefix` of
    /// [`VisionTower::load`](crate::VisionTower::load)).
    pub fn vision_prefix(self) -> &'static str {
        match self {
            Self::Legacy => "vision_tower.vision_model",
            Self::Nested => "model.vision_tower.vision_model",
        }
    }

    /// Key prefix of the projector's `linear_1` / `linear_2`.
    pub fn projector_prefix(self) -> &'static str {
        match self {
            Self::Legacy => PROJECTOR_PREFIX,
            Self::Nested => "model.multi_modal_projector",
        }
    }

    /// Key prefix of the language model's decoder (embedding, layers, final norm).
    pub fn decoder_prefix(self) -> &'static str {
        match self {
            Self::Legacy => "language_model.model",
            Self::Nested => "model.language_model",
        }
    }

    /// Key of the language model's untied LM head.
    pub fn lm_head_key(self) -> &'static str {
        match self {
            Self::Legacy => "language_model.lm_head.weight",
            Self::Nested => "lm_head.weight",
        }
    }
}

/// Loads a whole Hugging Face LLaVA folder: a CLIP or SigLIP vision tower, LLaVA's MLP
/// projector and a Qwen language model, from `config.json` (`vision_config`, `text_config`,
/// `image_token_index`, `vision_feature_layer`, `vision_feature_select_strategy`),
/// `preprocessor_config.json` and the safetensors weights, named in either
/// [`LlavaLayout`].
///
/// Numbers match transformers' `LlavaForConditionalGeneration`, except that a SigLIP tower
/// under the "default" strategy keeps every token (see `vlm_vision::SelectStrategy`). A
/// projector other than `gelu` with biases is a [`ModelError::UnsupportedLlava`]; other
/// errors name the file and, for weights, the key.
pub fn load_llava_hf<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<QwenVlm<B>, ModelError> {
    let dir = dir.as_ref();
    let config_path = dir.join(HF_CONFIG);
    let llava: LlavaJson = read_config(&config_path)?;
    llava.check(&config_path)?;
    let store = WeightStore::open_dir(dir)?;
    let layout = LlavaLayout::detect(&store);
    let vision = VisionTower::load(dir, layout.vision_prefix(), llava.selection, device)?;
    let language_model = llava_language_model(&store, &config_path, layout, device)?;
    let projector = MlpProjector::from_store_at(
        &store,
        layout.projector_prefix(),
        vision.output_dim(),
        language_model.config().hidden_size,
        device,
    )?;
    VisionLanguageModel::new(
        vision,
        AnyProjector::Mlp(projector),
        language_model,
        llava.image_token_index,
    )
}

/// Loads a Qwen language model from a Hugging Face folder: a Qwen checkpoint, or the language
/// model of a LLaVA checkpoint (a `config.json` with a `text_config`; weights in either
/// [`LlavaLayout`]).
pub fn load_language_model<B: Backend>(
    dir: impl AsRef<Path>,
    device: &B::Device,
) -> Result<QwenModel<B>, ModelError> {
    let dir = dir.as_ref();
    let config_path = dir.join(HF_CONFIG);
    let config: Value = read_config(&config_path)?;
    if config.get("text_config").is_none() {
        return Ok(QwenModel::load(dir, device)?);
    }
    let store = WeightStore::open_dir(dir)?;
    llava_language_model(&store, &config_path, LlavaLayout::detect(&store), device)
}

/// The Qwen model of a LLaVA checkpoint, its config read from `text_config`.
fn llava_language_model<B: Backend>(
    store: &WeightStore,
    config_path: &Path,
    layout: LlavaLayout,
    device: &B::Device,
) -> Result<QwenModel<B>, ModelError> {
    let config = QwenConfig::from_file(config_path)?;
    let (prefix, head) = (layout.decoder_prefix(), layout.lm_head_key());
    let model = QwenModel::from_store_at(store, config, prefix, head, device)?;
    Ok(model)
}
