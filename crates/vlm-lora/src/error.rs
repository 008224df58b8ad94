use std::path::PathBuf;

use vlm_hf::HfError;

/// Everything that can go wrong while configuring, attaching, reading or writing LoRA adapters.
///
/// Errors about adapter files name the file and the tensor key, so that a user with a
/// mismatched adapter (trained for another model, another rank) knows what disagrees.
#[derive(Debug, thiserror::Error)]
pub enum LoraError {
    /// Reading or writing `adapter_config.json` or `adapter_model.safetensors` failed (I/O,
    /// malformed JSON or safetensors header, unsupported dtype).
    #[error(transparent)]
    Hf(#[from] HfError),
    /// A LoRA setting is out of its valid range (rank 0, dropout outside `[0, 1)`, ...).
    #[error("invalid LoRA config: {0}")]
    InvalidConfig(String),
    /// An `adapter_config.json` asks for a PEFT feature this crate does not implement.
    #[error("{path}: `{field}` = {value} is not supported (vlm-lora implements plain LoRA)")]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        field: String,
        /// Its value, as JSON.
        value: String,
    },
    /// A `target_modules` regex does not compile (Rust's `regex` has no look-around or
    /// back-references).
    #[error("invalid target_modules regex `{pattern}`: {message}")]
    InvalidRegex {
        /// The pattern as written.
        pattern: String,
        /// The compiler's message.
        message: String,
    },
    /// No adaptable module of the model matches `target_modules`.
    #[error(
        "target_modules {targets} match none of the model's adaptable modules (such as {examples})"
    )]
    NoTargetMatched {
        /// The targets, as written in `adapter_config.json`.
        targets: String,
        /// A few module paths the model offers, to show what names look like.
        examples: String,
    },
    /// An adapter file lacks the tensor of a targeted module.
    #[error("adapter tensor `{key}` is missing from {path}")]
    MissingKey {
        /// The missing tensor key.
        key: String,
        /// The adapter file.
        path: PathBuf,
    },
    /// An adapter tensor's rank differs from the configured `r`.
    #[error("adapter tensor `{key}` in {path} has rank {actual}, but r = {expected}")]
    RankMismatch {
        /// The tensor key.
        key: String,
        /// The adapter file.
        path: PathBuf,
        /// The configured rank.
        expected: usize,
        /// The rank found.
        actual: usize,
    },
    /// An adapter tensor does not fit the module it targets.
    #[error("adapter tensor `{key}` in {path}: expected shape {expected:?}, found {actual:?}")]
    ShapeMismatch {
        /// The tensor key.
        key: String,
        /// The adapter file.
        path: PathBuf,
        /// The shape the module implies.
        expected: Vec<usize>,
        /// The stored shape.
        actual: Vec<usize>,
    },
    /// An adapter file holds a tensor that belongs to no targeted module of this model.
    #[error("adapter tensor `{key}` in {path} belongs to no targeted module of this model")]
    UnexpectedKey {
        /// The tensor key.
        key: String,
        /// The adapter file.
        path: PathBuf,
    },
    /// The adapters a model carries disagree with the config they are saved with.
    #[error("module `{module}`: {detail}")]
    ConfigDisagrees {
        /// The module path.
        module: String,
        /// What disagrees.
        detail: String,
    },
}
