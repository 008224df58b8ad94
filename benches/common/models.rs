//! Random-weight Hugging Face folders for the bench config: a `SiglipVisionModel` and a
//! `Qwen2ForCausalLM`, written once and then loaded by `vlm` (and by transformers in
//! `tools/bench/compare.py`) like downloaded checkpoints.

use std::error::Error;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use serde_json::json;
use vlm::backend::{device, Inference};
use vlm::hf::{write_json, SafetensorsWriter};

use super::config::{BenchConfig, LlmDims, VisionDims};

/// The two model folders under one root.
#[derive(Debug, Clone)]
pub struct ModelDirs {
    /// The vision tower (`config.json`, `preprocessor_config.json`, `model.safetensors`).
    pub vision: PathBuf,
    /// The language model (`config.json`, `model.safetensors`).
    pub llm: PathBuf,
}

impl ModelDirs {
    /// The folders under `root`: `root/vision` and `root/llm`.
    pub fn under(root: &Path) -> Self {
        Self {
            vision: root.join("vision"),
            llm: root.join("llm"),
        }
    }
}

/// Writes both folders under `root` with weights drawn from a seeded normal(0, 0.02), unit
/// norms and zero biases.
pub fn write_models(config: &BenchConfig, root: &Path) -> Result<ModelDirs, Box<dyn Error>> {
    let dirs = ModelDirs::under(root);
    Inference::seed(&device(), 0);
    write_vision(&config.vision, &dirs.vision)?;
    write_llm(&config.llm, &dirs.llm)?;
    Ok(dirs)
}

fn normal<const D: usize>(shape: [usize; D]) -> Tensor<Inference, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 0.02), &device())
}

fn ones(len: usize) -> Tensor<Inference, 1> {
    Tensor::ones([len], &device())
}

fn zeros(len: usize) -> Tensor<Inference, 1> {
    Tensor::zeros([len], &device())
}

/// Adds `{name}.weight` `[out, input]` and, with `bias`, `{name}.bias`.
fn add_linear(writer: &mut SafetensorsWriter, name: &str, input: usize, out: usize, bias: bool) {
    writer.add(format!("{name}.weight"), normal([out, input]));
    if bias {
        writer.add(format!("{name}.bias"), zeros(out));
    }
}

/// Adds a LayerNorm `{name}.weight` (ones) and `{name}.bias` (zeros).
fn add_layer_norm(writer: &mut SafetensorsWriter, name: &str, width: usize) {
    writer.add(format!("{name}.weight"), ones(width));
    writer.add(format!("{name}.bias"), zeros(width));
}

fn write_vision(dims: &VisionDims, dir: &Path) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    write_json(&dir.join("config.json"), &vision_config(dims))?;
    write_json(
        &dir.join("preprocessor_config.json"),
        &preprocessor_config(dims),
    )?;
    let (d, p) = (dims.hidden_size, dims.patch_size);
    let patches = (dims.image_size / p).pow(2);
    let mut writer = SafetensorsWriter::new();
    writer.add(
        "vision_model.embeddings.patch_embedding.weight",
        normal([d, 3, p, p]),
    );
    writer.add("vision_model.embeddings.patch_embedding.bias", zeros(d));
    writer.add(
        "vision_model.embeddings.position_embedding.weight",
        normal([patches, d]),
    );
    for layer in 0..dims.num_hidden_layers {
        let l = format!("vision_model.encoder.layers.{layer}");
        add_layer_norm(&mut writer, &format!("{l}.layer_norm1"), d);
        add_layer_norm(&mut writer, &format!("{l}.layer_norm2"), d);
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            add_linear(&mut writer, &format!("{l}.self_attn.{proj}"), d, d, true);
        }
        let inner = dims.intermediate_size;
        add_linear(&mut writer, &format!("{l}.mlp.fc1"), d, inner, true);
        add_linear(&mut writer, &format!("{l}.mlp.fc2"), inner, d, true);
    }
    add_layer_norm(&mut writer, "vision_model.post_layernorm", d);
    writer.write(&dir.join("model.safetensors"))?;
    Ok(())
}

fn vision_config(dims: &VisionDims) -> serde_json::Value {
    json!({
        "architectures": ["SiglipVisionModel"],
        "model_type": "siglip_vision_model",
        "attention_dropout": 0.0,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_size": dims.hidden_size,
        "image_size": dims.image_size,
        "intermediate_size": dims.intermediate_size,
        "layer_norm_eps": 1e-6,
        "num_attention_heads": dims.num_attention_heads,
        "num_channels": 3,
        "num_hidden_layers": dims.num_hidden_layers,
        "patch_size": dims.patch_size,
        "vision_use_head": false,
        "torch_dtype": "float32"
    })
}

fn preprocessor_config(dims: &VisionDims) -> serde_json::Value {
    json!({
        "image_processor_type": "SiglipImageProcessor",
        "do_convert_rgb": true,
        "do_normalize": true,
        "do_rescale": true,
        "do_resize": true,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"height": dims.image_size, "width": dims.image_size}
    })
}

fn write_llm(dims: &LlmDims, dir: &Path) -> Result<(), Box<dyn Error>> {
    std::fs::create_dir_all(dir)?;
    write_json(&dir.join("config.json"), &llm_config(dims))?;
    let (hidden, inner) = (dims.hidden_size, dims.intermediate_size);
    let head_dim = hidden / dims.num_attention_heads;
    let kv = dims.num_key_value_heads * head_dim;
    let mut writer = SafetensorsWriter::new();
    writer.add(
        "model.embed_tokens.weight",
        normal([dims.vocab_size, hidden]),
    );
    writer.add("model.norm.weight", ones(hidden));
    if !dims.tie_word_embeddings {
        writer.add("lm_head.weight", normal([dims.vocab_size, hidden]));
    }
    for layer in 0..dims.num_hidden_layers {
        let l = format!("model.layers.{layer}");
        writer.add(format!("{l}.input_layernorm.weight"), ones(hidden));
        writer.add(format!("{l}.post_attention_layernorm.weight"), ones(hidden));
        for (proj, out) in [("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)] {
            add_linear(
                &mut writer,
                &format!("{l}.self_attn.{proj}"),
                hidden,
                out,
                true,
            );
        }
        add_linear(
            &mut writer,
            &format!("{l}.self_attn.o_proj"),
            hidden,
            hidden,
            false,
        );
        add_linear(
            &mut writer,
            &format!("{l}.mlp.gate_proj"),
            hidden,
            inner,
            false,
        );
        add_linear(
            &mut writer,
            &format!("{l}.mlp.up_proj"),
            hidden,
            inner,
            false,
        );
        add_linear(
            &mut writer,
            &format!("{l}.mlp.down_proj"),
            inner,
            hidden,
            false,
        );
    }
    writer.write(&dir.join("model.safetensors"))?;
    Ok(())
}

fn llm_config(dims: &LlmDims) -> serde_json::Value {
    json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "hidden_size": dims.hidden_size,
        "intermediate_size": dims.intermediate_size,
        "max_position_embeddings": 4096,
        "num_attention_heads": dims.num_attention_heads,
        "num_hidden_layers": dims.num_hidden_layers,
        "num_key_value_heads": dims.num_key_value_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": dims.rope_theta,
        "tie_word_embeddings": dims.tie_word_embeddings,
        "use_sliding_window": false,
        "vocab_size": dims.vocab_size,
        "bos_token_id": 0,
        "eos_token_id": null,
        "torch_dtype": "float32"
    })
}
