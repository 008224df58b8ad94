//! The CLIP or SigLIP tower a config names, chosen at run time.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{backend::Backend, DType, Tensor, TensorCreationOptions};
use serde_json::Value;
use vlm_hf::{
    read_config_section, HfError, PreprocessorConfig, SafetensorsWriter, WeightStore, VISION_CONFIG,
};
use vlm_vision::{
    find_tower_prefix, read_preprocessing, ClipVisionConfig, ClipVisionTower, FeatureSelection,
    SiglipVisionConfig, SiglipVisionTower, VisionEncoder, VisionError,
};

use crate::ModelError;

/// Either vision tower of `vlm-vision`, picked from the folder's `config.json`: what a
/// checkpoint loads without knowing the tower type at compile time.
// One value per model, so the size gap between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum VisionTower<B: Backend> {
    /// A CLIP ViT (LLaVA-1.5's encoder).
    Clip(ClipVisionTower<B>),
    /// A SigLIP ViT.
    Siglip(SiglipVisionTower<B>),
}

impl<B: Backend> VisionTower<B> {
    /// Loads the tower of a Hugging Face folder: a vision model, a dual-tower CLIP/SigLIP
    /// model or a LLaVA checkpoint (config in its nested `vision_config`), with the folder's
    /// `preprocessor_config.json`.
    ///
    /// The weights' key prefix is found from the file's keys ([`find_tower_prefix`]: every
    /// layout transformers 4 and 5 save) unless `weight_prefix` names it.
    pub fn load(
        dir: impl AsRef<Path>,
        weight_prefix: Option<&str>,
        selection: FeatureSelection,
        options: impl Into<TensorCreationOptions<B>>,
    ) -> Result<Self, ModelError> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let section = read_config_section(&config_path, VISION_CONFIG)?;
        let model_type = section.model_type().unwrap_or_default().to_string();
        let clip = ClipVisionConfig::MODEL_TYPES.contains(&model_type.as_str());
        if !clip && !SiglipVisionConfig::MODEL_TYPES.contains(&model_type.as_str()) {
            return Err(ModelError::UnknownVisionModel {
                path: config_path,
                model_type,
            });
        }
        let preprocessing = read_preprocessing(dir)?;
        let options = options.into();
        let store = WeightStore::open_dir(dir)?;
        let weight_prefix = match weight_prefix {
            Some(prefix) => prefix.to_string(),
            None => find_tower_prefix(&store)?,
        };
        let weight_prefix = weight_prefix.as_str();
        Ok(if clip {
            let config = ClipVisionConfig::from_file(&config_path)?;
            let tower = ClipVisionTower::from_store(
                &store,
                &config,
                preprocessing,
                weight_prefix,
                selection,
                options,
            )?;
            Self::Clip(tower)
        } else {
            let config = SiglipVisionConfig::from_file(&config_path)?;
            let tower = SiglipVisionTower::from_store(
                &store,
                &config,
                preprocessing,
                weight_prefix,
                selection,
                options,
            )?;
            Self::Siglip(tower)
        })
    }
}

impl<B: Backend> VisionTower<B> {
    /// The tower's config as transformers writes its vision model's (a LLaVA's
    /// `vision_config`), recording `dtype`.
    pub fn hf_config(&self, dtype: Option<DType>) -> Result<Value, HfError> {
        match self {
            Self::Clip(tower) => tower.hf_config(dtype),
            Self::Siglip(tower) => tower.hf_config(dtype),
        }
    }

    /// Writes the tower to `dir` as a `CLIPVisionModel` or `SiglipVisionModel` folder that
    /// [`load`](Self::load) reads back (a tower trained with the rest of the model).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), VisionError> {
        match self {
            Self::Clip(tower) => tower.save(dir),
            Self::Siglip(tower) => tower.save(dir),
        }
    }

    /// Adds the tower's weights to `writer` under transformers' names below `prefix`.
    pub fn add_hf_weights(&self, writer: &mut SafetensorsWriter, prefix: &str) {
        match self {
            Self::Clip(tower) => tower.add_hf_weights(writer, prefix),
            Self::Siglip(tower) => tower.add_hf_weights(writer, prefix),
        }
    }
}

impl<B: Backend> VisionEncoder<B> for VisionTower<B> {
    fn forward(&self, pixels: Tensor<B, 4>) -> Result<Tensor<B, 3>, VisionError> {
        match self {
            Self::Clip(tower) => tower.forward(pixels),
            Self::Siglip(tower) => tower.forward(pixels),
        }
    }

    fn output_dim(&self) -> usize {
        match self {
            Self::Clip(tower) => tower.output_dim(),
            Self::Siglip(tower) => tower.output_dim(),
        }
    }

    fn tokens_per_image(&self) -> usize {
        match self {
            Self::Clip(tower) => tower.tokens_per_image(),
            Self::Siglip(tower) => tower.tokens_per_image(),
        }
    }

    fn image_size(&self) -> usize {
        match self {
            Self::Clip(tower) => tower.image_size(),
            Self::Siglip(tower) => tower.image_size(),
        }
    }

    fn preprocessing(&self) -> &PreprocessorConfig {
        match self {
            Self::Clip(tower) => tower.preprocessing(),
            Self::Siglip(tower) => tower.preprocessing(),
        }
    }
}
