use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use vlm_hf::{
    parse_config_section, read_config_section, ConfigSection, PreprocessorConfig, VISION_CONFIG,
};

use crate::VisionError;

/// Reads the `preprocessor_config.json` of a tower folder (a vision model, a dual-tower model
/// or a LLaVA checkpoint): how images must be prepared for the tower.
///
/// A folder without the file is a [`VisionError::MissingPreprocessorConfig`] naming it; a
/// malformed one is an [`HfError::Json`] naming it too.
pub fn read_preprocessing(dir: impl AsRef<Path>) -> Result<PreprocessorConfig, VisionError> {
    let path = dir.as_ref().join(PreprocessorConfig::FILE_NAME);
    if !path.is_file() {
        return Err(VisionError::MissingPreprocessorConfig { path });
    }
    Ok(PreprocessorConfig::from_file(path)?)
}

/// Checks that images prepared by `preprocessing` have the tower's square `image_size`, when
/// the processor makes images of one fixed size.
pub(crate) fn check_preprocessing(
    preprocessing: &PreprocessorConfig,
    image_size: usize,
) -> Result<(), VisionError> {
    let Some((height, width)) = preprocessing.fixed_output_size() else {
        return Ok(());
    };
    let side = u32::try_from(image_size).ok();
    if Some(height) == side && Some(width) == side {
        return Ok(());
    }
    Err(VisionError::InvalidConfig {
        field: "size",
        reason: format!(
            "{} makes {height}x{width} images but the tower takes {image_size}x{image_size}",
            PreprocessorConfig::FILE_NAME
        ),
    })
}

/// Reads a vision tower's config from a `config.json` that is either the tower's own (flat,
/// `CLIPVisionModel`) or a composite model's with a nested `vision_config` (`CLIPModel`,
/// `SiglipModel`, LLaVA).
///
/// The section's `model_type`, when present, must be one of `model_types`. `torch_dtype`
/// (older files) is renamed to `dtype`, and a section without either inherits the top-level
/// one, so the config struct sees a single `dtype` key.
pub(crate) fn read_vision_config<T: DeserializeOwned>(
    path: &Path,
    model_types: &'static [&'static str],
) -> Result<T, VisionError> {
    let section = read_config_section(path, VISION_CONFIG)?;
    check_model_type(path, &section, model_types)?;
    let ConfigSection { mut fields, parent } = section;
    check_fields(path, &fields)?;
    let dtype = weight_dtype(&fields).or_else(|| parent.as_ref().and_then(weight_dtype));
    fields.remove("torch_dtype");
    fields.remove("dtype");
    if let Some(dtype) = dtype {
        fields.insert("dtype".to_string(), dtype);
    }
    Ok(parse_config_section(path, &Value::Object(fields))?)
}

fn check_model_type(
    path: &Path,
    section: &ConfigSection,
    model_types: &'static [&'static str],
) -> Result<(), VisionError> {
    match section.model_type() {
        Some(found) if !model_types.contains(&found) => Err(VisionError::WrongModelType {
            path: path.to_path_buf(),
            model_type: found.to_string(),
            expected: model_types,
        }),
        _ => Ok(()),
    }
}

/// Refuses the fields whose value the towers cannot honour: attention dropout (the towers
/// compute none) and a `layer_norm_eps` that is not a positive number.
fn check_fields(path: &Path, section: &Map<String, Value>) -> Result<(), VisionError> {
    let refuse = |field: &str, reason: String| {
        Err(VisionError::UnsupportedField {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        })
    };
    let number = |field: &str| section.get(field).filter(|v| !v.is_null());
    if let Some(value) = number("attention_dropout") {
        if value.as_f64() != Some(0.0) {
            return refuse("attention_dropout", format!("{value} (only 0)"));
        }
    }
    if let Some(value) = number("layer_norm_eps") {
        // A non-number is left to the typed parse.
        if value.as_f64().is_some_and(|eps| eps <= 0.0) {
            return refuse("layer_norm_eps", format!("{value} (must be positive)"));
        }
    }
    Ok(())
}

/// The weight dtype a config object names: `dtype`, else `torch_dtype`, ignoring nulls.
fn weight_dtype(config: &Map<String, Value>) -> Option<Value> {
    ["dtype", "torch_dtype"]
        .iter()
        .filter_map(|key| config.get(*key))
        .find(|value| !value.is_null())
        .cloned()
}
