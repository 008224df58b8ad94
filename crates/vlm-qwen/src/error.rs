use std::path::PathBuf;

use vlm_hf::HfError;
use vlm_lora::LoraError;

/// Everything that can go wrong while loading or running a Qwen model.
#[derive(Debug, thiserror::Error)]
pub enum QwenError {
    /// Reading `config.json` or the safetensors weights failed (missing tensor, wrong shape,
    /// unsupported dtype, I/O, malformed JSON), or writing a model folder did; the inner
    /// error names the file and the key.
    #[error(transparent)]
    Hf(#[from] HfError),
    /// `config.json` names a `model_type` this crate does not implement.
    #[error("unknown model_type `{model_type}` in {path} (supported: qwen, qwen2, qwen3)")]
    UnknownModelType {
        /// The `model_type` found in the file.
        model_type: String,
        /// The config file.
        path: PathBuf,
    },
    /// A `config.json` field asks for a feature this implementation lacks, or holds a value
    /// that cannot be right (a zero size, a non-positive epsilon or RoPE base, heads that do
    /// not divide).
    #[error("unsupported configuration in {path}: field `{field}`: {reason}")]
    UnsupportedConfig {
        /// The config file.
        path: PathBuf,
        /// The field at fault (`rope_parameters.rope_type`, `num_hidden_layers`, ...).
        field: String,
        /// What is wrong, with the offending value.
        reason: String,
    },
    /// Tensors given to a forward pass disagree in shape, or token ids are out of range.
    #[error("invalid model input: {0}")]
    InvalidInput(String),
    /// A generation setting is out of its valid range.
    #[error("invalid generation setting: {0}")]
    InvalidGeneration(String),
    /// Attaching, loading or saving LoRA adapters failed.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// The `config.json` given to save a model describes another architecture.
    #[error("{path} does not describe this model")]
    ConfigMismatch {
        /// The config file.
        path: PathBuf,
    },
}
