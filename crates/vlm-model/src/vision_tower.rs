//! The CLIP or SigLIP tower a config names, chosen at run time.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{backend::Backend, Tensor};
use serde_json::Value;
use vlm_hf::{read_config, PreprocessorConfig, WeightStore};
use vlm_vision::{
    find_tower_prefix, read_preprocessing, ClipVisionConfig, ClipVisionTower, FeatureSelection,
    SiglipVisionConfig, SiglipVisionTower, VisionEncoder, VisionError,
};

use crate::ModelError;

/// `model_type` values of CLIP configs (the tower's own, the dual-tower model's).
const CLIP_TYPES: &[&str] = &["clip_vision_model", "clip"];
/// `model_type` values of SigLIP configs.
const SIGLIP_TYPES: &[&str] = &["siglip_vision_model", "siglip"];

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
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let model_type = vision_model_type(&config_path)?;
        let clip = CLIP_TYPES.contains(&model_type.as_str());
        if !clip && !SIGLIP_TYPES.contains(&model_type.as_str()) {
            return Err(ModelError::UnknownVisionModel {
                path: config_path,
                model_type,
            });
        }
        let preprocessing = read_preprocessing(dir)?;
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
                device,
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
                device,
            )?;
            Self::Siglip(tower)
        })
    }
}

/// The `model_type` of a config's nested `vision_config`, else its own; empty when absent.
fn vision_model_type(path: &Path) -> Result<String, ModelError> {
    let root: Value = read_config(path)?;
    let section = root.get("vision_config").unwrap_or(&root);
    let model_type = section.get("model_type").and_then(Value::as_str);
    Ok(model_type.unwrap_or_default().to_string())
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
