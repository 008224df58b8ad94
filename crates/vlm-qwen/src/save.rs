//! Saving a (LoRA-merged) model as a Hugging Face folder in its checkpoint's own layout.

use std::fs;
use std::path::Path;

use burn::tensor::backend::Backend;
use vlm_hf::{create_dir_all, write_atomic, HfError, SafetensorsWriter};
use vlm_lora::{AdaptableModel, LoraLinear};

use crate::load::KeyMap;
use crate::names::{LayerNames, Names, LM_HEAD};
use crate::{QwenConfig, QwenDecoderLayer, QwenError, QwenModel};

const CONFIG_FILE: &str = "config.json";
const GENERATION_CONFIG_FILE: &str = "generation_config.json";
const WEIGHTS_FILE: &str = "model.safetensors";

impl<B: Backend> QwenModel<B> {
    /// Writes the model to `dir` as a Hugging Face folder that [`QwenModel::load`] (and, for
    /// Qwen2/3, transformers' `from_pretrained`) reads: `config.json` copied from
    /// `base_config` (with `generation_config.json` beside it, when present) and one
    /// `model.safetensors` with the checkpoint's own tensor names and layout (v1 keeps its
    /// fused `c_attn`), in the model's float dtype.
    ///
    /// Every LoRA adapter is merged into its base weight in the file (whether or not it is
    /// merged in memory), so the folder is a plain model. `base_config` must describe this
    /// model (normally the `config.json` it was loaded from). Files are written atomically.
    pub fn save_merged(
        &self,
        dir: impl AsRef<Path>,
        base_config: impl AsRef<Path>,
    ) -> Result<(), QwenError> {
        let (dir, base_config) = (dir.as_ref(), base_config.as_ref());
        if QwenConfig::from_file(base_config)? != *self.config() {
            return Err(QwenError::ConfigMismatch {
                path: base_config.to_path_buf(),
            });
        }
        create_dir_all(dir)?;
        self.weights().write(&dir.join(WEIGHTS_FILE))?;
        copy_atomic(base_config, &dir.join(CONFIG_FILE))?;
        let generation = base_config.with_file_name(GENERATION_CONFIG_FILE);
        if generation.is_file() {
            copy_atomic(&generation, &dir.join(GENERATION_CONFIG_FILE))?;
        }
        Ok(())
    }

    /// Every tensor of the checkpoint under its layout's name, adapters merged.
    fn weights(&self) -> SafetensorsWriter {
        let mut writer = SafetensorsWriter::new();
        self.add_weights(&mut writer, &str::to_string);
        writer
    }

    /// Adds every tensor, adapters merged (as [`save_merged`](Self::save_merged) writes
    /// them), to `writer` with the decoder under `decoder_prefix` instead of its own root and
    /// the untied LM head (if any) under `lm_head_key`: the language model of a composite
    /// checkpoint such as a LLaVA's (`language_model.model`, `language_model.lm_head.weight`),
    /// named as [`from_store_at`](Self::from_store_at) reads it back.
    pub fn add_merged_weights_at(
        &self,
        writer: &mut SafetensorsWriter,
        decoder_prefix: &str,
        lm_head_key: &str,
    ) {
        let keys = KeyMap {
            decoder_prefix: decoder_prefix.to_string(),
            lm_head_key: lm_head_key.to_string(),
        };
        self.add_weights(writer, &|key| keys.resolve(key));
    }

    /// Adds every tensor to `writer` under `rename` of its checkpoint name.
    fn add_weights(&self, writer: &mut SafetensorsWriter, rename: &dyn Fn(&str) -> String) {
        let names = Names::of(self.config().variant);
        let decoder = &self.model;
        writer.add(
            rename(names.embed_tokens()),
            decoder.embed_tokens.weight.val(),
        );
        writer.add(rename(names.final_norm()), decoder.norm.gamma.val());
        for (index, layer) in decoder.layers.iter().enumerate() {
            add_layer_norms(writer, &names.layer(index), layer, rename);
        }
        self.visit_linears(&mut |path, linear| add_linear(writer, path, linear, rename));
        if let Some(head) = &self.lm_head {
            let key = rename(&format!("{LM_HEAD}.weight"));
            writer.add(key, head.weight.val().transpose());
        }
    }
}

/// The RMSNorm weights of one decoder layer (with Qwen3's per-head norms).
fn add_layer_norms<B: Backend>(
    writer: &mut SafetensorsWriter,
    names: &LayerNames,
    layer: &QwenDecoderLayer<B>,
    rename: &dyn Fn(&str) -> String,
) {
    writer.add(
        rename(&names.input_norm()),
        layer.input_layernorm.gamma.val(),
    );
    writer.add(
        rename(&names.post_attention_norm()),
        layer.post_attention_layernorm.gamma.val(),
    );
    let attention = &layer.self_attn;
    if let (Some(q_norm), Some(k_norm)) = (&attention.q_norm, &attention.k_norm) {
        writer.add(rename(&names.q_norm()), q_norm.gamma.val());
        writer.add(rename(&names.k_norm()), k_norm.gamma.val());
    }
}

/// `{path}.weight` (`[out, in]`, adapter merged, computed while writing) and `{path}.bias`.
fn add_linear<B: Backend>(
    writer: &mut SafetensorsWriter,
    path: &str,
    linear: &LoraLinear<B>,
    rename: &dyn Fn(&str) -> String,
) {
    let dims = [linear.d_output(), linear.d_input()];
    let dtype = linear.base.weight.val().dtype();
    let linear_for_write = linear.clone();
    writer.add_lazy(rename(&format!("{path}.weight")), dims, dtype, move || {
        linear_for_write.effective_weight().transpose()
    });
    if let Some(bias) = &linear.base.bias {
        writer.add(rename(&format!("{path}.bias")), bias.val());
    }
}

/// Copies `from` to `to` atomically.
fn copy_atomic(from: &Path, to: &Path) -> Result<(), HfError> {
    write_atomic(to, |temp| fs::copy(from, temp).map(drop))
}
