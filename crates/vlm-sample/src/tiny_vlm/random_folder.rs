//! Hugging Face folders with random weights: the tiny model's starting point, written and
//! then loaded like any checkpoint. The backend's generator is seeded first, so the same
//! sizes give the same weights every run.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use vlm_hf::{PreprocessorConfig, SafetensorsWriter};

use super::{preprocessing, TinyVlmError, TinyVlmSizes, IMAGE_SIDE};

/// Writes a Qwen2 Hugging Face folder with a `vocab`-token vocabulary and random weights:
/// normal with std `1 / sqrt(hidden)` (Hugging Face's 0.02 suits wide models; a 128-wide one
/// trained from it barely moves its attention in a few thousand steps), norms 1, biases 0.
pub fn write_random_qwen2<B: Backend>(
    dir: &Path,
    vocab: usize,
    sizes: &TinyVlmSizes,
    device: &B::Device,
) -> Result<(), TinyVlmError> {
    let (hidden, inter) = (sizes.hidden, sizes.intermediate);
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": sizes.layers,
        "num_attention_heads": sizes.heads,
        "num_key_value_heads": sizes.kv_heads,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "torch_dtype": "float32"
    });
    let kv = sizes.kv_heads * hidden / sizes.heads;
    let mut w = RandomWeights::<B>::new(1.0 / (hidden as f64).sqrt(), device);
    w.normal("model.embed_tokens.weight", [vocab, hidden]);
    w.ones("model.norm.weight", hidden);
    for layer in 0..sizes.layers {
        let p = format!("model.layers.{layer}");
        w.ones(&format!("{p}.input_layernorm.weight"), hidden);
        w.ones(&format!("{p}.post_attention_layernorm.weight"), hidden);
        for (name, out) in [("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)] {
            w.normal(&format!("{p}.self_attn.{name}.weight"), [out, hidden]);
            w.zeros(&format!("{p}.self_attn.{name}.bias"), out);
        }
        w.normal(&format!("{p}.self_attn.o_proj.weight"), [hidden, hidden]);
        w.normal(&format!("{p}.mlp.gate_proj.weight"), [inter, hidden]);
        w.normal(&format!("{p}.mlp.up_proj.weight"), [inter, hidden]);
        w.normal(&format!("{p}.mlp.down_proj.weight"), [hidden, inter]);
    }
    w.write(dir, &config)
}

/// Writes a SigLIP vision tower folder (`SiglipVisionModel` layout, without the pooling
/// head, with the model's [`preprocessing`]) with random weights spread as transformers
/// initialises SigLIP: the patch convolution normal with std `1 / sqrt(fan_in)`, positions
/// `1 / sqrt(width)`, linears `sqrt(2 / (fan_in + fan_out))` (Xavier's spread), norms 1,
/// biases 0.
pub fn write_random_siglip<B: Backend>(
    dir: &Path,
    sizes: &TinyVlmSizes,
    device: &B::Device,
) -> Result<(), TinyVlmError> {
    let (dim, inter, patch) = (sizes.vit_dim, 4 * sizes.vit_dim, sizes.patch);
    let config = serde_json::json!({
        "architectures": ["SiglipVisionModel"],
        "model_type": "siglip_vision_model",
        "hidden_size": dim,
        "intermediate_size": inter,
        "num_hidden_layers": sizes.vit_layers,
        "num_attention_heads": sizes.vit_heads,
        "num_channels": 3,
        "image_size": IMAGE_SIDE,
        "patch_size": patch,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
        "vision_use_head": false,
        "torch_dtype": "float32"
    });
    let xavier = |fan_in: usize, fan_out: usize| (2.0 / (fan_in + fan_out) as f64).sqrt();
    let mut w = RandomWeights::<B>::new(1.0 / (dim as f64).sqrt(), device);
    let e = "vision_model.embeddings";
    w.normal_std(
        &format!("{e}.patch_embedding.weight"),
        [dim, 3, patch, patch],
        1.0 / ((3 * patch * patch) as f64).sqrt(),
    );
    w.zeros(&format!("{e}.patch_embedding.bias"), dim);
    w.normal(
        &format!("{e}.position_embedding.weight"),
        [(IMAGE_SIDE / patch).pow(2), dim],
    );
    for layer in 0..sizes.vit_layers {
        let p = format!("vision_model.encoder.layers.{layer}");
        w.layer_norm(&format!("{p}.layer_norm1"), dim);
        w.layer_norm(&format!("{p}.layer_norm2"), dim);
        for name in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            w.linear(&format!("{p}.self_attn.{name}"), dim, dim, xavier(dim, dim));
        }
        w.linear(&format!("{p}.mlp.fc1"), dim, inter, xavier(dim, inter));
        w.linear(&format!("{p}.mlp.fc2"), inter, dim, xavier(inter, dim));
    }
    w.layer_norm("vision_model.post_layernorm", dim);
    w.write(dir, &config)?;
    write_file(
        &dir.join(PreprocessorConfig::FILE_NAME),
        &serde_json::to_vec_pretty(&preprocessing())?,
    )
}

/// Random tensors by Hugging Face name, written as a model folder.
struct RandomWeights<B: Backend> {
    writer: SafetensorsWriter,
    std: f64,
    device: B::Device,
}

impl<B: Backend> RandomWeights<B> {
    /// Seeds the backend's generator (the same weights every run); `std` is the spread of
    /// [`normal`](Self::normal).
    fn new(std: f64, device: &B::Device) -> Self {
        B::seed(device, 0);
        Self {
            writer: SafetensorsWriter::new(),
            std,
            device: device.clone(),
        }
    }

    fn normal<const D: usize>(&mut self, name: &str, shape: [usize; D]) {
        self.normal_std(name, shape, self.std);
    }

    fn normal_std<const D: usize>(&mut self, name: &str, shape: [usize; D], std: f64) {
        let t = Tensor::<B, D>::random(shape, Distribution::Normal(0.0, std), &self.device);
        self.writer.add(name, t);
    }

    fn ones(&mut self, name: &str, len: usize) {
        let t = Tensor::<B, 1>::ones([len], &self.device);
        self.writer.add(name, t);
    }

    fn zeros(&mut self, name: &str, len: usize) {
        let t = Tensor::<B, 1>::zeros([len], &self.device);
        self.writer.add(name, t);
    }

    /// A linear `input -> output` with weight std `std` and a zero bias.
    fn linear(&mut self, name: &str, input: usize, output: usize, std: f64) {
        self.normal_std(&format!("{name}.weight"), [output, input], std);
        self.zeros(&format!("{name}.bias"), output);
    }

    /// A layer norm at identity: weight 1, bias 0.
    fn layer_norm(&mut self, name: &str, len: usize) {
        self.ones(&format!("{name}.weight"), len);
        self.zeros(&format!("{name}.bias"), len);
    }

    /// `config.json` and `model.safetensors` into `dir`.
    fn write(self, dir: &Path, config: &serde_json::Value) -> Result<(), TinyVlmError> {
        std::fs::create_dir_all(dir).map_err(|source| TinyVlmError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        write_file(
            &dir.join("config.json"),
            &serde_json::to_vec_pretty(config)?,
        )?;
        Ok(self.writer.write(&dir.join("model.safetensors"))?)
    }
}

/// Writes `bytes` to `path`, naming the path on failure.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TinyVlmError> {
    std::fs::write(path, bytes).map_err(|source| TinyVlmError::Io {
        path: path.to_path_buf(),
        source,
    })
}
