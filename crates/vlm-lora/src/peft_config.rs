//! `adapter_config.json`: the [`LoraConfig`] in PEFT's file format.

use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use vlm_hf::{read_config, HfError};

use crate::{LoraConfig, LoraError, TargetModules};

/// File name of the adapter config inside an adapter folder.
pub(crate) const CONFIG_FILE: &str = "adapter_config.json";

/// PEFT settings that change the adapter's shapes or forward pass; each must be left at its
/// default (absent, `null`, `false`, `{}` or `[]`) for plain LoRA.
const MUST_BE_UNSET: [&str; 18] = [
    "alora_invocation_tokens",
    "alpha_pattern",
    "arrow_config",
    "exclude_modules",
    "fan_in_fan_out",
    "kasa_config",
    "layer_replication",
    "layers_to_transform",
    "lora_bias",
    "megatron_config",
    "modules_to_save",
    "monteclora_config",
    "rank_pattern",
    "target_parameters",
    "trainable_token_indices",
    "use_bdlora",
    "use_dora",
    "velora_config",
];

/// The fields read from a PEFT LoRA config, with `peft.LoraConfig`'s defaults.
#[derive(Deserialize)]
struct PeftLoraJson {
    #[serde(default = "default_r")]
    r: usize,
    #[serde(default = "default_alpha")]
    lora_alpha: f64,
    #[serde(default)]
    lora_dropout: f64,
    #[serde(default)]
    use_rslora: bool,
    #[serde(default)]
    base_model_name_or_path: Option<String>,
}

fn default_r() -> usize {
    8
}

fn default_alpha() -> f64 {
    8.0
}

impl LoraConfig {
    /// Reads `adapter_config.json` from a PEFT adapter folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self, LoraError> {
        Self::from_file(dir.as_ref().join(CONFIG_FILE))
    }

    /// Reads a PEFT `adapter_config.json` of any name.
    ///
    /// Only plain LoRA is accepted: `peft_type` must be `LORA`, `bias` `none`, and the
    /// settings that change shapes or the forward pass (DoRA, rank/alpha patterns, layer
    /// selection, `modules_to_save`, `fan_in_fan_out`, ...) must be unset; anything else is a
    /// [`LoraError::Unsupported`] naming the key.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, LoraError> {
        let path = path.as_ref();
        let json: Map<String, Value> = read_config(path)?;
        check_plain_lora(path, &json)?;
        let raw = PeftLoraJson::deserialize(Value::Object(json.clone())).map_err(|source| {
            HfError::Json {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let config = LoraConfig {
            r: raw.r,
            lora_alpha: raw.lora_alpha,
            lora_dropout: raw.lora_dropout,
            target_modules: target_modules(path, json.get("target_modules"))?,
            use_rslora: raw.use_rslora,
            base_model_name_or_path: raw.base_model_name_or_path,
        };
        config.validate()?;
        Ok(config)
    }

    /// The `adapter_config.json` content PEFT writes for this config (sorted keys; the
    /// settings this crate does not implement at their defaults).
    pub fn to_peft_json(&self) -> Value {
        json!({
            "alpha_pattern": {},
            "base_model_name_or_path": self.base_model_name_or_path,
            "bias": "none",
            "fan_in_fan_out": false,
            "inference_mode": true,
            "init_lora_weights": true,
            "layers_pattern": null,
            "layers_to_transform": null,
            "lora_alpha": json_number(self.lora_alpha),
            "lora_dropout": self.lora_dropout,
            "modules_to_save": null,
            "peft_type": "LORA",
            "r": self.r,
            "rank_pattern": {},
            "revision": null,
            "target_modules": self.target_modules.to_json(),
            "task_type": "CAUSAL_LM",
            "use_dora": false,
            "use_rslora": self.use_rslora,
        })
    }
}

/// `alpha` as PEFT writes it: an integer when it is one (`32`, not `32.0`).
fn json_number(alpha: f64) -> Value {
    if alpha.fract() == 0.0 && alpha.abs() < 2f64.powi(53) {
        Value::from(alpha as i64)
    } else {
        Value::from(alpha)
    }
}

fn check_plain_lora(path: &Path, json: &Map<String, Value>) -> Result<(), LoraError> {
    let unsupported = |field: &str, value: &Value| LoraError::Unsupported {
        path: path.to_path_buf(),
        field: field.to_string(),
        value: value.to_string(),
    };
    let peft_type = json.get("peft_type").unwrap_or(&Value::Null);
    if peft_type.as_str() != Some("LORA") {
        return Err(unsupported("peft_type", peft_type));
    }
    if let Some(bias) = json.get("bias").filter(|b| b.as_str() != Some("none")) {
        return Err(unsupported("bias", bias));
    }
    match MUST_BE_UNSET
        .iter()
        .find_map(|key| json.get(*key).filter(|v| !is_unset(v)).map(|v| (key, v)))
    {
        Some((key, value)) => Err(unsupported(key, value)),
        None => Ok(()),
    }
}

fn is_unset(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

/// A JSON list of names, or one regex string; `all-linear` and a missing value (PEFT's
/// per-architecture default) need model knowledge this crate does not have.
fn target_modules(path: &Path, value: Option<&Value>) -> Result<TargetModules, LoraError> {
    let unsupported = |value: &Value| LoraError::Unsupported {
        path: path.to_path_buf(),
        field: "target_modules".into(),
        value: value.to_string(),
    };
    match value.unwrap_or(&Value::Null) {
        Value::String(pattern) if pattern != "all-linear" => {
            Ok(TargetModules::Regex(pattern.clone()))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| unsupported(item))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TargetModules::names),
        other => Err(unsupported(other)),
    }
}
