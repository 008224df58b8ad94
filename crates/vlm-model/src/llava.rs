//! Hugging Face LLaVA folders (`LlavaForConditionalGeneration`): the whole model, or only its
//! language model, loaded from one checkpoint.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::TensorCreationOptions;
use serde::Deserialize;
use serde_json::Value;
use vlm_hf::{
    join_key, parse_config_section, read_config, read_config_section, HfError, WeightStore,
    TEXT_CONFIG,
};
use vlm_qwen::{QwenConfig, QwenModel};
use vlm_vision::{find_tower_prefix, FeatureSelection, VisionEncoder};

use crate::{
    AnyProjector, MlpProjector, ModelError, QwenVlm, VisionLanguageModel, VisionTower,
    VisionTowerConfig, HF_PROJECTOR_PREFIX,
};

/// The config file of a Hugging Face folder.
pub(crate) const HF_CONFIG: &str = "config.json";

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
    /// Reads the file, refusing what this crate does not compute: a list of feature layers
    /// (concatenated features) and projectors other than LLaVA's `mlp2x_gelu` with biases.
    fn from_file(path: &Path) -> Result<Self, ModelError> {
        let unsupported = |reason: String| ModelError::UnsupportedLlava {
            path: path.to_path_buf(),
            reason,
        };
        let raw: Value = read_config(path)?;
        if let Some(layers) = raw.get("vision_feature_layer").filter(|v| v.is_array()) {
            return Err(unsupported(format!(
                "vision_feature_layer {layers}: only one layer (a number) is supported"
            )));
        }
        let llava: Self = parse_config_section(path, &raw)?;
        llava.check(unsupported)?;
        Ok(llava)
    }

    /// Refuses projectors other than LLaVA's `mlp2x_gelu` with biases.
    fn check(&self, unsupported: impl Fn(String) -> ModelError) -> Result<(), ModelError> {
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

/// Where a LLaVA checkpoint keeps its three parts, found from its keys.
///
/// The layouts in use: llava-hf folders as transformers 4 saved them
/// (`vision_tower.vision_model.*`, `multi_modal_projector.*`, `language_model.model.*`,
/// `language_model.lm_head.weight`), as transformers 5 saves them (the same with
/// `vision_tower.*` one level shorter), and a raw `state_dict` of transformers' module tree
/// (`model.vision_tower...`, `model.multi_modal_projector.*`, `model.language_model.*`,
/// `lm_head.weight`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlavaLayout {
    /// Key prefix of the vision tower (the `weight_prefix` of
    /// [`VisionTower::load`](crate::VisionTower::load)).
    pub vision: String,
    /// Key prefix of the projector's `linear_1` / `linear_2`.
    pub projector: String,
    /// Key prefix of the language model's decoder (embedding, layers, final norm).
    pub decoder: String,
    /// Key of the language model's untied LM head.
    pub lm_head: String,
}

/// The projector's key suffix that marks where it is stored.
const PROJECTOR_ANCHOR: &str = "multi_modal_projector.linear_1.weight";
/// The decoder's key suffix that marks where it is stored.
const DECODER_ANCHOR: &str = "embed_tokens.weight";
/// The LM head's key (suffix).
const LM_HEAD_ANCHOR: &str = "lm_head.weight";

/// The transformers version whose `save_pretrained` key layout an exported LLaVA folder
/// follows (both load in transformers 5; 4.x reads only its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransformersLayout {
    /// transformers 5: the tower's weights directly under `vision_tower.`.
    #[default]
    V5,
    /// transformers 4: the tower's weights under `vision_tower.vision_model.`.
    V4,
}

/// Key prefix of the tower in the llava-hf layout.
const VISION_TOWER: &str = "vision_tower";
/// Key prefix of the tower's own weights inside a CLIP / SigLIP vision model (transformers 4).
const VISION_MODEL: &str = "vision_model";
/// Key prefix of the language model in the llava-hf layout.
const LANGUAGE_MODEL: &str = "language_model";
/// Key prefix of the decoder inside a causal LM.
const DECODER: &str = "model";

impl LlavaLayout {
    /// The layout `save_pretrained` of transformers `version` writes a
    /// `LlavaForConditionalGeneration` in: what [`detect`](Self::detect) finds in such a
    /// folder, and what the exporter writes.
    pub fn saved_by(version: TransformersLayout) -> Self {
        let vision = match version {
            TransformersLayout::V5 => VISION_TOWER.to_string(),
            TransformersLayout::V4 => join_key(VISION_TOWER, VISION_MODEL),
        };
        Self {
            vision,
            projector: HF_PROJECTOR_PREFIX.to_string(),
            decoder: join_key(LANGUAGE_MODEL, DECODER),
            lm_head: join_key(LANGUAGE_MODEL, LM_HEAD_ANCHOR),
        }
    }

    /// The layout of a checkpoint's weights, each part found from the keys; a part that is
    /// absent or found under several prefixes is an error listing what the files hold.
    pub fn detect(store: &WeightStore) -> Result<Self, ModelError> {
        let projector_root = store.find_prefix(PROJECTOR_ANCHOR, "LLaVA projector")?;
        let (decoder, lm_head) = language_model_keys(store)?;
        Ok(Self {
            vision: find_tower_prefix(store)?,
            projector: join_key(&projector_root, HF_PROJECTOR_PREFIX),
            decoder,
            lm_head,
        })
    }
}

/// The language model's decoder prefix and LM head key, found from the keys: what loading
/// only the LLM of a LLaVA checkpoint needs.
fn language_model_keys(store: &WeightStore) -> Result<(String, String), ModelError> {
    let decoder = store.find_prefix(DECODER_ANCHOR, "language model")?;
    // A tied head has no key: it then goes where the decoder's layout puts it.
    let lm_head = match store.find_prefix(LM_HEAD_ANCHOR, "LM head") {
        Ok(prefix) => join_key(&prefix, LM_HEAD_ANCHOR),
        Err(HfError::LayoutNotFound { .. }) => match decoder.strip_suffix(".model") {
            Some(root) => join_key(root, LM_HEAD_ANCHOR),
            None => LM_HEAD_ANCHOR.to_string(),
        },
        Err(other) => return Err(other.into()),
    };
    Ok((decoder, lm_head))
}

/// Loads a whole Hugging Face LLaVA folder: a CLIP or SigLIP vision tower, LLaVA's MLP
/// projector and a Qwen language model, from `config.json` (`vision_config`, `text_config`,
/// `image_token_index`, `vision_feature_layer`, `vision_feature_select_strategy`),
/// `preprocessor_config.json` and the safetensors weights, in any [`LlavaLayout`].
///
/// Numbers match transformers' `LlavaForConditionalGeneration`, except that a SigLIP tower
/// under the "default" strategy keeps every token (see `vlm_vision::SelectStrategy`). A
/// projector other than `gelu` with biases is a [`ModelError::UnsupportedLlava`]; other
/// errors name the file and, for weights, the key.
pub fn load_llava_hf<B: Backend>(
    dir: impl AsRef<Path>,
    options: impl Into<TensorCreationOptions<B>>,
) -> Result<QwenVlm<B>, ModelError> {
    let dir = dir.as_ref();
    let options = options.into();
    let config_path = dir.join(HF_CONFIG);
    let llava = LlavaJson::from_file(&config_path)?;
    let store = WeightStore::open_dir(dir)?;
    let layout = LlavaLayout::detect(&store)?;
    let vision = VisionTower::load(dir, Some(&layout.vision), llava.selection, options.clone())?;
    let keys = (layout.decoder.as_str(), layout.lm_head.as_str());
    let language_model = llava_language_model(&store, &config_path, keys, options.clone())?;
    let projector = MlpProjector::from_store_at(
        &store,
        &layout.projector,
        vision.output_dim(),
        language_model.config().hidden_size,
        options,
    )?;
    VisionLanguageModel::new(
        vision,
        AnyProjector::Mlp(projector),
        language_model,
        llava.image_token_index,
    )
}

/// The vision tower of a Hugging Face LLaVA folder as a checkpoint records it: the folder
/// (its key layout found on load) with the feature selection its `config.json` names.
pub fn llava_vision_tower(dir: impl AsRef<Path>) -> Result<VisionTowerConfig, ModelError> {
    let dir = dir.as_ref();
    let llava = LlavaJson::from_file(&dir.join(HF_CONFIG))?;
    Ok(VisionTowerConfig::new(dir, llava.selection))
}

/// Loads a Qwen language model from a Hugging Face folder: a Qwen checkpoint, or the language
/// model of a LLaVA checkpoint (a `config.json` with a `text_config`; weights in any
/// [`LlavaLayout`]).
pub fn load_language_model<B: Backend>(
    dir: impl AsRef<Path>,
    options: impl Into<TensorCreationOptions<B>>,
) -> Result<QwenModel<B>, ModelError> {
    let dir = dir.as_ref();
    let config_path = dir.join(HF_CONFIG);
    if !read_config_section(&config_path, TEXT_CONFIG)?.is_nested() {
        return Ok(QwenModel::load(dir, options)?);
    }
    let store = WeightStore::open_dir(dir)?;
    let (decoder, lm_head) = language_model_keys(&store)?;
    llava_language_model(&store, &config_path, (&decoder, &lm_head), options)
}

/// The Qwen model of a LLaVA checkpoint, its config read from `text_config`, its weights
/// under `(decoder prefix, LM head key)`.
fn llava_language_model<B: Backend>(
    store: &WeightStore,
    config_path: &Path,
    (prefix, head): (&str, &str),
    options: impl Into<TensorCreationOptions<B>>,
) -> Result<QwenModel<B>, ModelError> {
    let config = QwenConfig::from_file(config_path)?;
    let model = QwenModel::from_store_at(store, config, prefix, head, options)?;
    Ok(model)
}
