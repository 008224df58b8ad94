//! The quickstart's model folders: its starting point, Hugging Face folders with random
//! weights written here and then loaded like any checkpoint, and the trained model saved for
//! `chat` and `serve`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use vlm::backend::{device, Inference};
use vlm::hf::{ImageSize, PreprocessorConfig, SafetensorsWriter};
use vlm::model::{
    ChatTemplateConfig, StagedCheckpoint, VisionTowerConfig, VlmConfig, TOKENIZER_FILE,
};
use vlm::sample::CompactVocab;

use super::{QsVlm, SELECTION, SIDE};

/// The sizes of the model, as flags so that they can be explored without editing the program.
#[derive(clap::Args, Clone, Copy)]
pub(super) struct Arch {
    /// Side of a vision patch in pixels (64 must be a multiple of it).
    #[arg(long, default_value_t = 8)]
    pub(super) patch: usize,
    /// Width of the vision tower.
    #[arg(long, default_value_t = 96)]
    pub(super) vit_dim: usize,
    /// Encoder layers of the vision tower.
    #[arg(long, default_value_t = 2)]
    pub(super) vit_layers: usize,
    /// Attention heads of the vision tower.
    #[arg(long, default_value_t = 4)]
    pub(super) vit_heads: usize,
    /// Pixel-shuffle factor of the projector: each `s x s` square of patches becomes one
    /// image token.
    #[arg(long, default_value_t = 2)]
    pub(super) shuffle: usize,
    /// Width of the LLM.
    #[arg(long, default_value_t = 128)]
    pub(super) hidden: usize,
    /// Width of the LLM's MLP.
    #[arg(long, default_value_t = 256)]
    pub(super) intermediate: usize,
    /// Decoder layers of the LLM.
    #[arg(long, default_value_t = 2)]
    pub(super) layers: usize,
    /// Query heads of the LLM.
    #[arg(long, default_value_t = 8)]
    pub(super) heads: usize,
    /// Key/value heads of the LLM (grouped-query attention; must divide `heads`).
    #[arg(long, default_value_t = 4)]
    pub(super) kv_heads: usize,
}

/// The image processing of the model: 64 x 64, rescaled and normalised to [-1, 1].
pub(super) static PREPROCESSING: LazyLock<PreprocessorConfig> =
    LazyLock::new(|| PreprocessorConfig {
        size: ImageSize::Exact {
            height: SIDE as u32,
            width: SIDE as u32,
        },
        image_mean: [0.5; 3],
        image_std: [0.5; 3],
        ..PreprocessorConfig::siglip_default()
    });

/// A Qwen2 Hugging Face folder with random weights: normal with std `1 / sqrt(hidden)`
/// (Hugging Face's 0.02 suits wide models; a 128-wide one trained from it barely moves its
/// attention in a few thousand steps), norms 1, biases 0.
pub(super) fn write_random_qwen2(
    dir: &Path,
    vocab: usize,
    arch: &Arch,
) -> Result<(), Box<dyn Error>> {
    let (hidden, inter) = (arch.hidden, arch.intermediate);
    let config = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads,
        "max_position_embeddings": 512,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "tie_word_embeddings": true,
        "torch_dtype": "float32"
    });
    let kv = arch.kv_heads * hidden / arch.heads;
    let mut w = RandomWeights::new(1.0 / (hidden as f64).sqrt());
    w.normal("model.embed_tokens.weight", [vocab, hidden]);
    w.ones("model.norm.weight", hidden);
    for layer in 0..arch.layers {
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

/// A SigLIP vision tower folder (`SiglipVisionModel` layout, without the pooling head) with
/// random weights spread as transformers initialises SigLIP: the patch convolution normal
/// with std `1 / sqrt(fan_in)`, positions `1 / sqrt(width)`, linears `sqrt(2 / (fan_in +
/// fan_out))` (Xavier's spread), norms 1, biases 0.
pub(super) fn write_random_siglip(dir: &Path, arch: &Arch) -> Result<(), Box<dyn Error>> {
    let (dim, inter, patch) = (arch.vit_dim, 4 * arch.vit_dim, arch.patch);
    let config = serde_json::json!({
        "architectures": ["SiglipVisionModel"],
        "model_type": "siglip_vision_model",
        "hidden_size": dim,
        "intermediate_size": inter,
        "num_hidden_layers": arch.vit_layers,
        "num_attention_heads": arch.vit_heads,
        "num_channels": 3,
        "image_size": SIDE,
        "patch_size": patch,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
        "vision_use_head": false,
        "torch_dtype": "float32"
    });
    let xavier = |fan_in: usize, fan_out: usize| (2.0 / (fan_in + fan_out) as f64).sqrt();
    let mut w = RandomWeights::new(1.0 / (dim as f64).sqrt());
    let e = "vision_model.embeddings";
    w.normal_std(
        &format!("{e}.patch_embedding.weight"),
        [dim, 3, patch, patch],
        1.0 / ((3 * patch * patch) as f64).sqrt(),
    );
    w.zeros(&format!("{e}.patch_embedding.bias"), dim);
    w.normal(
        &format!("{e}.position_embedding.weight"),
        [(SIDE / patch).pow(2), dim],
    );
    for layer in 0..arch.vit_layers {
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
    std::fs::write(
        dir.join(PreprocessorConfig::FILE_NAME),
        serde_json::to_vec_pretty(&*PREPROCESSING)?,
    )?;
    Ok(())
}

/// Random tensors by Hugging Face name, written as a model folder.
struct RandomWeights {
    writer: SafetensorsWriter,
    std: f64,
    dev: burn::tensor::Device<Inference>,
}

impl RandomWeights {
    /// Seeds the backend's generator (the same weights every run); `std` is the spread of
    /// [`normal`](Self::normal).
    fn new(std: f64) -> Self {
        let dev = device();
        Inference::seed(&dev, 0);
        Self {
            writer: SafetensorsWriter::new(),
            std,
            dev,
        }
    }

    fn normal<const D: usize>(&mut self, name: &str, shape: [usize; D]) {
        self.normal_std(name, shape, self.std);
    }

    fn normal_std<const D: usize>(&mut self, name: &str, shape: [usize; D], std: f64) {
        let t = Tensor::<Inference, D>::random(shape, Distribution::Normal(0.0, std), &self.dev);
        self.writer.add(name, t);
    }

    fn ones(&mut self, name: &str, len: usize) {
        let t = Tensor::<Inference, 1>::ones([len], &self.dev);
        self.writer.add(name, t);
    }

    fn zeros(&mut self, name: &str, len: usize) {
        let t = Tensor::<Inference, 1>::zeros([len], &self.dev);
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
    fn write(self, dir: &Path, config: &serde_json::Value) -> Result<(), Box<dyn Error>> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(config)?)?;
        self.writer.write(&dir.join("model.safetensors"))?;
        Ok(())
    }
}

/// Writes the trained model as `dir/{llm, vision, checkpoint}`: the LLM as a Hugging Face
/// Qwen2 folder with its compact `tokenizer.json`, the vision tower as a SigLIP folder, and a
/// vlm checkpoint (projector, a copy of the tokenizer and `vlm_config.json` naming `../llm`,
/// `../vision` and its `tokenizer.json`) that `chat` and `serve` load by default. Returns the
/// checkpoint folder.
pub(super) fn save_model(
    model: &QsVlm<Inference>,
    vocab: &CompactVocab,
    llm_init: &Path,
    dir: &Path,
) -> Result<PathBuf, Box<dyn Error>> {
    let llm = dir.join("llm");
    model
        .language_model()
        .save_merged(&llm, llm_init.join("config.json"))?;
    vocab.write(llm.join("tokenizer.json"))?;
    model.vision().save(dir.join("vision"))?;
    let vision = VisionTowerConfig::new("../vision", SELECTION);
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: None,
    };
    let mut config = VlmConfig::for_model(model, PathBuf::from("../llm"), vision, template);
    config.tokenizer = Some(PathBuf::from(TOKENIZER_FILE));
    let staged = StagedCheckpoint::new(dir.join("checkpoint"), model, &config)?;
    vocab.write(staged.path().join(TOKENIZER_FILE))?;
    Ok(staged.commit()?)
}
