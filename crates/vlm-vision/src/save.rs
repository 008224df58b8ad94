//! Saving a vision tower as a Hugging Face folder: `config.json` (`CLIPVisionModel` or
//! `SiglipVisionModel`), `model.safetensors` under transformers' key names and
//! `preprocessor_config.json`, so that [`ClipVisionTower::load`], [`SiglipVisionTower::load`]
//! and transformers' `from_pretrained` read it back.
//!
//! The weights are written by walking the module tree through the tower's name table (the
//! one its loader reads through, [`hf_field`]): a parameter's key is its module path under
//! `vision_model.`, with Burn's names turned into PyTorch's where they differ (a layer norm's
//! `gamma`/`beta`, the position embedding table) and a linear's `[in, out]` weight transposed.

use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};
use serde::Serialize;
use serde_json::{json, Value};
use vlm_hf::{
    create_dir_all, join_key, torch_dtype_name, write_json, HfError, PreprocessorConfig,
    SafetensorsWriter,
};

use crate::weights::{hf_field, LINEAR};
use crate::{ClipVisionTower, SiglipVisionTower, VisionEncoder, VisionError};

/// Key prefix of the tower's weights in the saved folder.
const WEIGHT_PREFIX: &str = "vision_model";

impl<B: Backend> ClipVisionTower<B> {
    /// Writes the tower to `dir` (created if missing) as a `CLIPVisionModel` folder, weights
    /// in the tower's float dtype; each file is written atomically.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), VisionError> {
        save_tower(self, dir.as_ref(), |dtype| self.hf_config(dtype))
    }

    /// The tower's `config.json` as transformers writes a `CLIPVisionModel`'s (also the
    /// `vision_config` of a LLaVA's), recording `dtype` as the weights' dtype.
    pub fn hf_config(&self, dtype: Option<DType>) -> Result<Value, HfError> {
        let extra = json!({
            "architectures": ["CLIPVisionModel"],
            "model_type": "clip_vision_model",
        });
        config_json(self.config(), extra, dtype)
    }

    /// Adds the tower's weights to `writer` under transformers' names below `prefix`
    /// (`vision_model` in a `CLIPVisionModel` folder), in the tower's float dtype.
    pub fn add_hf_weights(&self, writer: &mut SafetensorsWriter, prefix: &str) {
        self.visit(&mut HfWeights::new(writer, prefix));
    }
}

impl<B: Backend> SiglipVisionTower<B> {
    /// Writes the tower to `dir` (created if missing) as a `SiglipVisionModel` folder, weights
    /// in the tower's float dtype; each file is written atomically. The config says
    /// `vision_use_head: false`: the attention-pool head is not part of the tower.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<(), VisionError> {
        save_tower(self, dir.as_ref(), |dtype| self.hf_config(dtype))
    }

    /// The tower's `config.json` as transformers writes a `SiglipVisionModel`'s (also the
    /// `vision_config` of a LLaVA's), recording `dtype` as the weights' dtype.
    pub fn hf_config(&self, dtype: Option<DType>) -> Result<Value, HfError> {
        let extra = json!({
            "architectures": ["SiglipVisionModel"],
            "model_type": "siglip_vision_model",
            "vision_use_head": false,
        });
        config_json(self.config(), extra, dtype)
    }

    /// Adds the tower's weights to `writer` under transformers' names below `prefix`
    /// (`vision_model` in a `SiglipVisionModel` folder), in the tower's float dtype.
    pub fn add_hf_weights(&self, writer: &mut SafetensorsWriter, prefix: &str) {
        self.visit(&mut HfWeights::new(writer, prefix));
    }
}

/// Writes the weights of `tower`, its `config` (given the weights' dtype) and its
/// preprocessing into `dir`.
fn save_tower<B: Backend, T: VisionEncoder<B> + Module<B>>(
    tower: &T,
    dir: &Path,
    config: impl FnOnce(Option<DType>) -> Result<Value, HfError>,
) -> Result<(), VisionError> {
    create_dir_all(dir)?;
    let mut writer = SafetensorsWriter::new();
    let mut weights = HfWeights::new(&mut writer, WEIGHT_PREFIX);
    tower.visit(&mut weights);
    let config = config(weights.dtype)?;
    writer.write(&dir.join("model.safetensors"))?;
    write_json(&dir.join("config.json"), &config)?;
    write_json(
        &dir.join(PreprocessorConfig::FILE_NAME),
        tower.preprocessing(),
    )?;
    Ok(())
}

/// `config` as a JSON object with the `extra` keys and the `dtype` transformers records.
fn config_json(
    config: &impl Serialize,
    extra: Value,
    dtype: Option<DType>,
) -> Result<Value, HfError> {
    let json_error = |source| HfError::Json {
        path: PathBuf::from("config.json"),
        source,
    };
    let mut config = serde_json::to_value(config).map_err(json_error)?;
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
        config.insert("dtype".to_string(), json!(dtype.map(torch_dtype_name)));
    }
    Ok(config)
}

/// A module visitor that adds every float parameter to a safetensors file under its
/// transformers key below `prefix`, remembering the weights' dtype.
struct HfWeights<'a> {
    writer: &'a mut SafetensorsWriter,
    prefix: &'a str,
    /// Module path of the parameter being visited, with each level's container type.
    path: Vec<(String, String)>,
    dtype: Option<DType>,
}

impl<'a> HfWeights<'a> {
    fn new(writer: &'a mut SafetensorsWriter, prefix: &'a str) -> Self {
        Self {
            writer,
            prefix,
            path: Vec::new(),
            dtype: None,
        }
    }
}

impl<B: Backend> ModuleVisitor<B> for HfWeights<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let Some(((field, container), parents)) = self.path.split_last() else {
            return;
        };
        let name = hf_field(container, field);
        let transpose = container == LINEAR && field == "weight";
        let key = parents
            .iter()
            .map(|(parent, _)| parent.as_str())
            .chain([name])
            .fold(self.prefix.to_string(), |key, part| join_key(&key, part));
        let tensor = param.val();
        self.dtype.get_or_insert(tensor.dtype());
        self.writer.add(
            key,
            if transpose {
                tensor.transpose()
            } else {
                tensor
            },
        );
    }
}
