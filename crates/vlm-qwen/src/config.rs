use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use vlm_hf::{read_config, HfError};

use crate::QwenError;

/// The Qwen generation a checkpoint belongs to: it decides the weight names and whether the
/// attention has per-head query/key norms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QwenVariant {
    /// Qwen-7B/14B (`model_type` "qwen", `QWenLMHeadModel`): `transformer.h.N` names, fused `c_attn`.
    V1,
    /// Qwen2 and Qwen2.5 (`model_type` "qwen2"): `model.layers.N` names, GQA, qkv bias.
    Qwen2,
    /// Qwen3 (`model_type` "qwen3"): explicit `head_dim`, RMSNorm on each query/key head.
    Qwen3,
}

/// The architecture of one Qwen checkpoint, resolved from any of the three `config.json` layouts.
///
/// Sizes are the ones the weights actually have: for v1 `intermediate_size` is already halved
/// (v1 configs store twice the MLP width).
#[derive(Debug, Clone, PartialEq)]
pub struct QwenConfig {
    /// Which layout the checkpoint uses.
    pub variant: QwenVariant,
    /// Number of token embeddings (rows of the embedding and of the LM head).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU MLP (rows of `gate_proj` and `up_proj`).
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Size of one attention head.
    pub head_dim: usize,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// Whether the query, key and value projections have a bias.
    pub qkv_bias: bool,
    /// Whether the attention output projection has a bias.
    pub o_proj_bias: bool,
    /// Whether the MLP projections have biases.
    pub mlp_bias: bool,
    /// Whether each query and key head is RMS-normalised before RoPE (Qwen3).
    pub qk_norm: bool,
    /// Whether the LM head reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
}

#[derive(Deserialize)]
struct ModelType {
    model_type: String,
}

/// `config.json` of a v1 `QWenLMHeadModel`; defaults are those of v1's `QWenConfig`.
#[derive(Deserialize)]
struct V1Json {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    kv_channels: usize,
    #[serde(default = "default_v1_rope_base")]
    rotary_emb_base: f64,
    #[serde(default = "default_eps")]
    layer_norm_epsilon: f64,
    #[serde(default = "default_rotary_pct")]
    rotary_pct: f64,
    #[serde(default = "default_true")]
    no_bias: bool,
    #[serde(default)]
    tie_word_embeddings: bool,
}

/// `config.json` of Qwen2/Qwen3; defaults are those of transformers' `Qwen2Config`/`Qwen3Config`.
#[derive(Deserialize)]
struct HfJson {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_hf_rope_theta")]
    rope_theta: f64,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    use_sliding_window: bool,
    rope_scaling: Option<Value>,
}

fn default_v1_rope_base() -> f64 {
    10_000.0
}
fn default_hf_rope_theta() -> f64 {
    10_000.0
}
fn default_eps() -> f64 {
    1e-6
}
fn default_rotary_pct() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_act() -> String {
    "silu".to_string()
}

/// Qwen3Config's `head_dim` default when the file has none.
const QWEN3_DEFAULT_HEAD_DIM: usize = 128;

impl QwenConfig {
    /// Reads a `config.json` of any supported layout (`model_type` "qwen", "qwen2" or "qwen3").
    ///
    /// A composite config (a LLaVA checkpoint's) is read from its nested `text_config`; when
    /// that section has no `tie_word_embeddings`, the top-level one applies (load the weights
    /// with [`QwenModel::from_store_at`](crate::QwenModel::from_store_at)).
    ///
    /// Unknown layouts, features this implementation lacks (sliding window, RoPE scaling,
    /// partial rotary, activations other than SiLU) and inconsistent head counts are typed
    /// errors naming the file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, QwenError> {
        let path = path.as_ref();
        let json = text_section(read_config(path)?);
        let ModelType { model_type } = parse(path, &json)?;
        let config = match model_type.as_str() {
            "qwen" => from_v1(path, parse(path, &json)?)?,
            "qwen2" => from_hf(path, QwenVariant::Qwen2, parse(path, &json)?)?,
            "qwen3" => from_hf(path, QwenVariant::Qwen3, parse(path, &json)?)?,
            _ => {
                return Err(QwenError::UnknownModelType {
                    model_type,
                    path: path.to_path_buf(),
                })
            }
        };
        config.validate(path)?;
        Ok(config)
    }

    /// How many query heads share one key/value head.
    pub fn kv_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    fn validate(&self, path: &Path) -> Result<(), QwenError> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, size)| *size == 0) {
            return unsupported(path, format!("{name} is 0"));
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return unsupported(
                path,
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_attention_heads, self.num_key_value_heads
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return unsupported(
                path,
                format!("odd head_dim {} cannot be rotated", self.head_dim),
            );
        }
        Ok(())
    }
}

/// The language model's section of a composite config (LLaVA's `text_config`), or the whole
/// config when it has none; a section without `tie_word_embeddings` takes the top-level one.
fn text_section(root: Value) -> Value {
    const TIED: &str = "tie_word_embeddings";
    let Value::Object(mut root) = root else {
        return root;
    };
    let Some(Value::Object(mut section)) = root.remove("text_config") else {
        return Value::Object(root);
    };
    if let (false, Some(tied)) = (section.contains_key(TIED), root.remove(TIED)) {
        section.insert(TIED.to_string(), tied);
    }
    Value::Object(section)
}

fn parse<T: DeserializeOwned>(path: &Path, json: &Value) -> Result<T, QwenError> {
    T::deserialize(json).map_err(|source| {
        QwenError::Hf(HfError::Json {
            path: path.to_path_buf(),
            source,
        })
    })
}

fn unsupported<T>(path: &Path, reason: String) -> Result<T, QwenError> {
    Err(QwenError::UnsupportedConfig {
        path: path.to_path_buf(),
        reason,
    })
}

fn from_v1(path: &Path, raw: V1Json) -> Result<QwenConfig, QwenError> {
    if raw.rotary_pct != 1.0 {
        return unsupported(path, format!("rotary_pct {} (only 1.0)", raw.rotary_pct));
    }
    if raw.kv_channels * raw.num_attention_heads != raw.hidden_size {
        return unsupported(
            path,
            format!(
                "kv_channels {} x num_attention_heads {} != hidden_size {}",
                raw.kv_channels, raw.num_attention_heads, raw.hidden_size
            ),
        );
    }
    Ok(QwenConfig {
        variant: QwenVariant::V1,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        // v1 builds w1/w2 with config.intermediate_size // 2.
        intermediate_size: raw.intermediate_size / 2,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        num_key_value_heads: raw.num_attention_heads,
        head_dim: raw.kv_channels,
        rope_theta: raw.rotary_emb_base,
        rms_norm_eps: raw.layer_norm_epsilon,
        qkv_bias: true,
        o_proj_bias: !raw.no_bias,
        mlp_bias: !raw.no_bias,
        qk_norm: false,
        tie_word_embeddings: raw.tie_word_embeddings,
    })
}

fn from_hf(path: &Path, variant: QwenVariant, raw: HfJson) -> Result<QwenConfig, QwenError> {
    check_hf_features(path, &raw)?;
    let qwen3 = variant == QwenVariant::Qwen3;
    let default_head_dim = if qwen3 {
        QWEN3_DEFAULT_HEAD_DIM
    } else {
        raw.hidden_size / raw.num_attention_heads.max(1)
    };
    Ok(QwenConfig {
        variant,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
        head_dim: raw.head_dim.unwrap_or(default_head_dim),
        rope_theta: raw.rope_theta,
        rms_norm_eps: raw.rms_norm_eps,
        qkv_bias: !qwen3 || raw.attention_bias,
        o_proj_bias: qwen3 && raw.attention_bias,
        mlp_bias: false,
        qk_norm: qwen3,
        tie_word_embeddings: raw.tie_word_embeddings,
    })
}

fn check_hf_features(path: &Path, raw: &HfJson) -> Result<(), QwenError> {
    if raw.hidden_act != "silu" {
        return unsupported(path, format!("hidden_act `{}` (only silu)", raw.hidden_act));
    }
    if raw.use_sliding_window {
        return unsupported(path, "use_sliding_window true".to_string());
    }
    match &raw.rope_scaling {
        Some(scaling) if !scaling.is_null() && !is_default_rope(scaling) => {
            unsupported(path, format!("rope_scaling {scaling}"))
        }
        _ => Ok(()),
    }
}

fn is_default_rope(scaling: &Value) -> bool {
    let kind = scaling.get("rope_type").or_else(|| scaling.get("type"));
    kind.and_then(Value::as_str) == Some("default")
}
