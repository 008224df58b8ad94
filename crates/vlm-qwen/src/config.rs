use std::path::Path;

use serde::Deserialize;
use serde_json::Value;
use vlm_hf::{parse_config_section, read_config_section, ConfigSection, TEXT_CONFIG};

use crate::{QwenError, RopeScaling, YarnScaling};

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
    /// RoPE base frequency (`rope_theta`, top-level or in transformers 5's `rope_parameters`;
    /// v1: `rotary_emb_base`).
    pub rope_theta: f64,
    /// How RoPE is stretched (`rope_type` of `rope_scaling` / `rope_parameters`).
    pub rope_scaling: RopeScaling,
    /// The longest sequence (cached + new tokens) computed as the reference does: v1 with
    /// `use_dynamic_ntk` or `use_logn_attn` changes its attention past `seq_length`, which is
    /// not implemented, so longer inputs are refused. `None`: no limit.
    pub max_context: Option<usize>,
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
    #[serde(default = "default_true")]
    scale_attn_weights: bool,
    #[serde(default)]
    use_dynamic_ntk: bool,
    #[serde(default)]
    use_logn_attn: bool,
    #[serde(default = "default_v1_seq_length")]
    seq_length: usize,
    #[serde(default)]
    attn_dropout_prob: f64,
    #[serde(default)]
    emb_dropout_prob: f64,
    #[serde(default)]
    use_cache_quantization: bool,
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
    /// transformers 4's place for the base; 5 writes it into `rope_parameters`.
    rope_theta: Option<f64>,
    /// transformers 4's RoPE scaling (`null`, or an object with `rope_type` / `type`).
    rope_scaling: Option<Value>,
    /// transformers 5's RoPE settings: `rope_theta`, `rope_type` and the type's parameters.
    rope_parameters: Option<Value>,
    max_position_embeddings: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    attention_dropout: f64,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default)]
    use_sliding_window: bool,
    max_window_layers: Option<usize>,
    layer_types: Option<Vec<String>>,
}

fn default_v1_rope_base() -> f64 {
    10_000.0
}
fn default_v1_seq_length() -> usize {
    2048
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
        let json = text_section(path)?;
        let ModelType { model_type } = parse_config_section(path, &json)?;
        let config = match model_type.as_str() {
            "qwen" => from_v1(path, parse_config_section(path, &json)?)?,
            "qwen2" => from_hf(path, QwenVariant::Qwen2, parse_config_section(path, &json)?)?,
            "qwen3" => from_hf(path, QwenVariant::Qwen3, parse_config_section(path, &json)?)?,
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
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.num_key_value_heads),
            ("head_dim", self.head_dim),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, size)| *size == 0) {
            return unsupported(path, name, "is 0".to_string());
        }
        if !self
            .num_attention_heads
            .is_multiple_of(self.num_key_value_heads)
        {
            return unsupported(
                path,
                "num_key_value_heads",
                format!(
                    "{} does not divide num_attention_heads {}",
                    self.num_key_value_heads, self.num_attention_heads
                ),
            );
        }
        if !self.head_dim.is_multiple_of(2) {
            return unsupported(
                path,
                "head_dim",
                format!("odd head_dim {} cannot be rotated", self.head_dim),
            );
        }
        if !is_positive(self.rms_norm_eps) {
            let reason = format!("{} (must be a positive number)", self.rms_norm_eps);
            return unsupported(path, "rms_norm_eps", reason);
        }
        if !is_positive(self.rope_theta) {
            let reason = format!("{} (must be a positive number)", self.rope_theta);
            return unsupported(path, "rope_theta", reason);
        }
        Ok(())
    }
}

/// Whether `value` is a finite number above 0 (NaN is not).
fn is_positive(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// The language model's section of a composite config (LLaVA's `text_config`), or the whole
/// config when it has none.
///
/// A section without `tie_word_embeddings` takes the top-level one. Where both are present,
/// transformers 4 ties by the section's value and 5 by either: a section that says `false`
/// under a top level that says `true` means two different models, and is refused.
fn text_section(path: &Path) -> Result<Value, QwenError> {
    const TIED: &str = "tie_word_embeddings";
    let ConfigSection { mut fields, parent } = read_config_section(path, TEXT_CONFIG)?;
    let inherited = parent.and_then(|mut parent| parent.remove(TIED));
    match (fields.get(TIED), inherited) {
        (None, Some(tied)) => {
            fields.insert(TIED.to_string(), tied);
        }
        (Some(Value::Bool(false)), Some(Value::Bool(true))) => {
            let reason = "false under a top-level tie_word_embeddings true: transformers 4 \
                          unties the LM head, 5 ties it"
                .to_string();
            return unsupported(path, "text_config.tie_word_embeddings", reason);
        }
        _ => {}
    }
    Ok(Value::Object(fields))
}

fn unsupported<T>(path: &Path, field: &str, reason: String) -> Result<T, QwenError> {
    Err(QwenError::UnsupportedConfig {
        path: path.to_path_buf(),
        field: field.to_string(),
        reason,
    })
}

fn from_v1(path: &Path, raw: V1Json) -> Result<QwenConfig, QwenError> {
    if raw.rotary_pct != 1.0 {
        return unsupported(path, "rotary_pct", format!("{} (only 1.0)", raw.rotary_pct));
    }
    if !raw.scale_attn_weights {
        let reason = "false (only attention scaled by 1/sqrt(head_dim))".to_string();
        return unsupported(path, "scale_attn_weights", reason);
    }
    if raw.use_cache_quantization {
        let reason = "true (the KV cache is kept in full precision)".to_string();
        return unsupported(path, "use_cache_quantization", reason);
    }
    check_no_dropout(path, "attn_dropout_prob", raw.attn_dropout_prob)?;
    check_no_dropout(path, "emb_dropout_prob", raw.emb_dropout_prob)?;
    if raw.kv_channels * raw.num_attention_heads != raw.hidden_size {
        return unsupported(
            path,
            "kv_channels",
            format!(
                "{} x num_attention_heads {} != hidden_size {}",
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
        rope_scaling: RopeScaling::None,
        max_context: (raw.use_dynamic_ntk || raw.use_logn_attn).then_some(raw.seq_length),
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
        if raw.num_attention_heads > 0 && !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            let reason = format!(
                "{} does not divide hidden_size {} (and there is no head_dim)",
                raw.num_attention_heads, raw.hidden_size
            );
            return unsupported(path, "num_attention_heads", reason);
        }
        raw.hidden_size / raw.num_attention_heads.max(1)
    };
    let (rope_theta, rope_scaling) = rope_settings(path, &raw)?;
    Ok(QwenConfig {
        variant,
        vocab_size: raw.vocab_size,
        hidden_size: raw.hidden_size,
        intermediate_size: raw.intermediate_size,
        num_hidden_layers: raw.num_hidden_layers,
        num_attention_heads: raw.num_attention_heads,
        num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
        head_dim: raw.head_dim.unwrap_or(default_head_dim),
        rope_theta,
        rope_scaling,
        max_context: None,
        rms_norm_eps: raw.rms_norm_eps,
        qkv_bias: !qwen3 || raw.attention_bias,
        o_proj_bias: qwen3 && raw.attention_bias,
        mlp_bias: false,
        qk_norm: qwen3,
        tie_word_embeddings: raw.tie_word_embeddings,
    })
}

/// Refuses a dropout probability other than 0: training would drop what this crate keeps.
fn check_no_dropout(path: &Path, field: &str, probability: f64) -> Result<(), QwenError> {
    if probability == 0.0 {
        return Ok(());
    }
    let reason = format!("{probability} (dropout is not implemented; only 0)");
    unsupported(path, field, reason)
}

fn check_hf_features(path: &Path, raw: &HfJson) -> Result<(), QwenError> {
    if raw.hidden_act != "silu" {
        return unsupported(
            path,
            "hidden_act",
            format!("`{}` (only silu)", raw.hidden_act),
        );
    }
    check_no_dropout(path, "attention_dropout", raw.attention_dropout)?;
    check_full_attention(path, raw)
}

/// Refuses sliding-window layers, as transformers decides them: by `layer_types` where the
/// file has it (transformers 4.53 and later write it), else by `use_sliding_window` with the
/// layers from `max_window_layers` on.
fn check_full_attention(path: &Path, raw: &HfJson) -> Result<(), QwenError> {
    if let Some(types) = &raw.layer_types {
        let sliding = types
            .iter()
            .enumerate()
            .find(|(_, kind)| kind.as_str() != "full_attention");
        return match sliding {
            Some((index, kind)) => unsupported(
                path,
                "layer_types",
                format!("layer {index} is `{kind}`: only full_attention is implemented"),
            ),
            None => Ok(()),
        };
    }
    let first_sliding = raw.max_window_layers.unwrap_or(0);
    if raw.use_sliding_window && first_sliding < raw.num_hidden_layers {
        let reason = format!(
            "true with max_window_layers {first_sliding} < num_hidden_layers {}: sliding-window \
             attention is not implemented",
            raw.num_hidden_layers
        );
        return unsupported(path, "use_sliding_window", reason);
    }
    Ok(())
}

/// The RoPE base and scaling of a Qwen2/Qwen3 config, from transformers 5's `rope_parameters`
/// or 4's top-level `rope_theta` and `rope_scaling`; where both forms are present they must
/// agree.
fn rope_settings(path: &Path, raw: &HfJson) -> Result<(f64, RopeScaling), QwenError> {
    let parameters = raw.rope_parameters.as_ref().filter(|v| !v.is_null());
    let scaling = raw.rope_scaling.as_ref().filter(|v| !v.is_null());
    let nested_theta = match parameters {
        Some(parameters) => rope_number(path, "rope_parameters", parameters, "rope_theta")?,
        None => None,
    };
    let rope_theta = match (raw.rope_theta, nested_theta) {
        (Some(top), Some(nested)) if top != nested => {
            let reason = format!("{nested} disagrees with the top-level rope_theta {top}");
            return unsupported(path, "rope_parameters.rope_theta", reason);
        }
        (top, nested) => nested.or(top).unwrap_or(DEFAULT_ROPE_THETA),
    };
    let scaling = match (parameters, scaling) {
        (Some(parameters), Some(scaling)) if rope_kind(parameters) != rope_kind(scaling) => {
            let reason = format!("{parameters} disagrees with rope_scaling {scaling}");
            return unsupported(path, "rope_parameters", reason);
        }
        (Some(parameters), _) => RopeSection::new(path, "rope_parameters", parameters),
        (None, Some(scaling)) => RopeSection::new(path, "rope_scaling", scaling),
        (None, None) => return Ok((rope_theta, RopeScaling::None)),
    };
    Ok((rope_theta, scaling.resolve(raw)?))
}

/// transformers' `rope_theta` default.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

/// `rope_type` (or 4's older `type`) of a RoPE settings object; "default" when absent.
fn rope_kind(settings: &Value) -> &str {
    let kind = settings.get("rope_type").or_else(|| settings.get("type"));
    kind.and_then(Value::as_str).unwrap_or("default")
}

/// A number field of a RoPE settings object; `None` when absent or null.
fn rope_number(
    path: &Path,
    section: &str,
    settings: &Value,
    key: &str,
) -> Result<Option<f64>, QwenError> {
    match settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => match value.as_f64() {
            Some(number) => Ok(Some(number)),
            None => unsupported(
                path,
                &format!("{section}.{key}"),
                format!("{value} is not a number"),
            ),
        },
    }
}

/// One RoPE settings object (`rope_parameters` or `rope_scaling`) and where it came from.
struct RopeSection<'a> {
    path: &'a Path,
    name: &'static str,
    settings: &'a Value,
}

impl<'a> RopeSection<'a> {
    fn new(path: &'a Path, name: &'static str, settings: &'a Value) -> Self {
        Self {
            path,
            name,
            settings,
        }
    }

    fn number(&self, key: &str) -> Result<Option<f64>, QwenError> {
        rope_number(self.path, self.name, self.settings, key)
    }

    fn refuse<T>(&self, key: &str, reason: String) -> Result<T, QwenError> {
        unsupported(self.path, &format!("{}.{key}", self.name), reason)
    }

    /// The scaling this section asks for: "default", "linear" and "yarn" as transformers
    /// computes them; every other type (dynamic, longrope, llama3, mrope...) is refused.
    fn resolve(&self, raw: &HfJson) -> Result<RopeScaling, QwenError> {
        if let Some(partial) = self.number("partial_rotary_factor")? {
            if partial != 1.0 {
                return self.refuse("partial_rotary_factor", format!("{partial} (only 1.0)"));
            }
        }
        match rope_kind(self.settings) {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: self.factor()?,
            }),
            "yarn" => self.yarn(raw),
            other => self.refuse(
                "rope_type",
                format!("`{other}` (supported: default, linear, yarn)"),
            ),
        }
    }

    fn factor(&self) -> Result<f64, QwenError> {
        match self.number("factor")? {
            Some(factor) if is_positive(factor) => Ok(factor),
            Some(factor) => self.refuse("factor", format!("{factor} (must be positive)")),
            None => self.refuse("factor", "missing (the scaling type needs it)".to_string()),
        }
    }

    /// transformers' `_compute_yarn_parameters`, with its defaults; an absent `factor` is
    /// `max_position_embeddings / original_max_position_embeddings`, as transformers 5 derives it.
    fn yarn(&self, raw: &HfJson) -> Result<RopeScaling, QwenError> {
        let original = match self.number("original_max_position_embeddings")? {
            Some(length) if length >= 1.0 => length as usize,
            Some(length) => {
                return self.refuse("original_max_position_embeddings", format!("{length}"))
            }
            None => match raw.max_position_embeddings {
                Some(length) if length > 0 => length,
                _ => {
                    let reason = "missing, and so is max_position_embeddings".to_string();
                    return self.refuse("original_max_position_embeddings", reason);
                }
            },
        };
        let factor = match (self.number("factor")?, raw.max_position_embeddings) {
            (None, Some(longest)) => longest as f64 / original as f64,
            _ => self.factor()?,
        };
        let mscale = |scale: f64, m: f64| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        let attention_factor = match self.number("attention_factor")? {
            Some(given) => given,
            None => match (self.number("mscale")?, self.number("mscale_all_dim")?) {
                (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                    mscale(factor, m) / mscale(factor, all)
                }
                _ => mscale(factor, 1.0),
            },
        };
        let truncate = match self.settings.get("truncate") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(truncate)) => *truncate,
            Some(other) => return self.refuse("truncate", format!("{other} is not a boolean")),
        };
        Ok(RopeScaling::Yarn(YarnScaling {
            factor,
            original_max_position_embeddings: original,
            beta_fast: nonzero_or(self.number("beta_fast")?, 32.0),
            beta_slow: nonzero_or(self.number("beta_slow")?, 1.0),
            attention_factor,
            truncate,
        }))
    }
}

/// transformers' `value or default` for the YaRN betas (0 and null both take the default).
fn nonzero_or(value: Option<f64>, default: f64) -> f64 {
    value.filter(|v| *v != 0.0).unwrap_or(default)
}
