use std::path::Path;

use serde::de::DeserializeOwned;

use crate::HfError;

/// Reads and parses a JSON config file (`config.json`, `preprocessor_config.json`, ...).
///
/// Unknown fields are ignored by serde unless the target type forbids them, so real
/// Hugging Face configs with many extra keys parse into small typed structs.
pub fn read_config<T: DeserializeOwned>(path: impl AsRef<Path>) -> Result<T, HfError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| HfError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| HfError::Json {
        path: path.to_path_buf(),
        source,
    })
}
