use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::HfError;

/// Key of the vision model's section in a composite config (LLaVA, `CLIPModel`, `SiglipModel`).
pub const VISION_CONFIG: &str = "vision_config";

/// Key of the language model's section in a composite config (LLaVA).
pub const TEXT_CONFIG: &str = "text_config";

/// Reads and parses a JSON config file (`config.json`, `preprocessor_config.json`, ...), of
/// at most [`MAX_CONFIG_BYTES`](crate::MAX_CONFIG_BYTES).
///
/// Unknown fields are ignored by serde unless the target type forbids them, so real
/// Hugging Face configs with many extra keys parse into small typed structs.
pub fn read_config<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T, HfError> {
    let path = path.as_ref();
    let text = crate::read_bounded_string(path, crate::MAX_CONFIG_BYTES).map_err(|source| {
        HfError::Io {
            path: path.to_path_buf(),
            source,
        }
    })?;
    serde_json::from_str(&text).map_err(|source| HfError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// One model's part of a `config.json` that is either that model's own (flat) or a composite
/// model's, holding it as a nested object under a key such as [`VISION_CONFIG`] or
/// [`TEXT_CONFIG`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigSection {
    /// The nested section's fields, or the whole config's when it has no such section.
    pub fields: Map<String, Value>,
    /// The composite config's other fields, which a section may inherit (`dtype`,
    /// `tie_word_embeddings`); `None` when the config is flat.
    pub parent: Option<Map<String, Value>>,
}

impl ConfigSection {
    /// The section's `model_type`, when it names one.
    pub fn model_type(&self) -> Option<&str> {
        self.fields.get("model_type").and_then(Value::as_str)
    }

    /// Whether the section was nested in a composite config.
    pub fn is_nested(&self) -> bool {
        self.parent.is_some()
    }
}

/// Reads the section `key` of the JSON config at `path` (see [`ConfigSection`]); errors name
/// the file.
pub fn read_config_section(path: impl AsRef<Path>, key: &str) -> Result<ConfigSection, HfError> {
    let mut root: Map<String, Value> = read_config(path)?;
    Ok(match root.remove(key) {
        Some(Value::Object(fields)) => ConfigSection {
            fields,
            parent: Some(root),
        },
        _ => ConfigSection {
            fields: root,
            parent: None,
        },
    })
}

/// Parses a config (or a section of one) read from `path` into its typed form; errors name
/// the file.
pub fn parse_config_section<T: DeserializeOwned>(
    path: impl AsRef<Path>,
    json: &Value,
) -> Result<T, HfError> {
    T::deserialize(json).map_err(|source| HfError::Json {
        path: path.as_ref().to_path_buf(),
        source,
    })
}
