use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use vlm_hf::{read_config, HfError};

use crate::VisionError;

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
    let root: Map<String, Value> = read_config(path)?;
    let mut section = match root.get("vision_config") {
        Some(Value::Object(nested)) => nested.clone(),
        _ => root.clone(),
    };
    check_model_type(path, &section, model_types)?;
    let dtype = weight_dtype(&section).or_else(|| weight_dtype(&root));
    section.remove("torch_dtype");
    section.remove("dtype");
    if let Some(dtype) = dtype {
        section.insert("dtype".to_string(), dtype);
    }
    T::deserialize(Value::Object(section)).map_err(|source| {
        VisionError::Hf(HfError::Json {
            path: path.to_path_buf(),
            source,
        })
    })
}

fn check_model_type(
    path: &Path,
    section: &Map<String, Value>,
    model_types: &'static [&'static str],
) -> Result<(), VisionError> {
    match section.get("model_type").and_then(Value::as_str) {
        Some(found) if !model_types.contains(&found) => Err(VisionError::WrongModelType {
            path: path.to_path_buf(),
            model_type: found.to_string(),
            expected: model_types,
        }),
        _ => Ok(()),
    }
}

/// The weight dtype a config object names: `dtype`, else `torch_dtype`, ignoring nulls.
fn weight_dtype(config: &Map<String, Value>) -> Option<Value> {
    ["dtype", "torch_dtype"]
        .iter()
        .filter_map(|key| config.get(*key))
        .find(|value| !value.is_null())
        .cloned()
}
