use std::path::PathBuf;

/// Everything that can go wrong while reading or writing a Hugging Face folder.
///
/// Each variant carries the file (and tensor key where there is one) so that a user with a
/// broken download knows what to fix.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    /// A file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file (config or shard index) is malformed or lacks a required field.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file has a corrupt header.
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A folder holds neither `model.safetensors` nor `model.safetensors.index.json`.
    #[error("no safetensors weights in {dir} (looked for model.safetensors and model.safetensors.index.json)")]
    NoWeights { dir: PathBuf },
    /// A tensor the model needs is absent from every file.
    #[error("tensor `{key}` not found in {source_name}")]
    MissingTensor { key: String, source_name: String },
    /// No tensor of a module's layout is in the files: they hold another model, or a layout
    /// this crate does not know.
    #[error(
        "cannot find the {what} in {origin}: no tensor is named `{anchor}` or `PREFIX.{anchor}`; \
         the keys start with: {}",
        seen.join(", ")
    )]
    LayoutNotFound {
        /// The folder or file searched.
        origin: PathBuf,
        /// The module looked for (`vision tower`, `language model`...).
        what: String,
        /// The key suffix that marks the module.
        anchor: String,
        /// The distinct first two components of the keys found.
        seen: Vec<String>,
    },
    /// A module's tensors appear under several prefixes, so which one to load is unclear.
    #[error(
        "ambiguous {what} in {origin}: `{anchor}` is found under the prefixes {}; name the one \
         to load",
        quoted(prefixes)
    )]
    AmbiguousLayout {
        /// The folder or file searched.
        origin: PathBuf,
        /// The module looked for.
        what: String,
        /// The key suffix that marks the module.
        anchor: String,
        /// Every prefix the anchor was found under (`""` for none).
        prefixes: Vec<String>,
    },
    /// A tensor exists but its shape differs from the one the config implies.
    #[error("tensor `{key}` in {path}: expected shape {expected:?}, found {actual:?}")]
    ShapeMismatch {
        key: String,
        path: PathBuf,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A tensor is stored in a dtype this kind of tensor cannot be read from.
    #[error(
        "tensor `{key}` in {path}: dtype {actual} is not supported, expected one of {expected}"
    )]
    UnsupportedDtype {
        key: String,
        path: PathBuf,
        actual: String,
        expected: &'static str,
    },
    /// The backend cannot compute in the precision asked for.
    #[error(
        "the {backend} backend cannot compute in {precision}: Burn reports no arithmetic \
         support for it there; use --dtype f32, or a backend that has it (the default flex \
         CPU backend, cuda, wgpu)"
    )]
    UnsupportedPrecision {
        /// The precision asked for.
        precision: crate::Precision,
        /// The backend, as Burn names it.
        backend: String,
    },
    /// A float tensor holds a NaN or an infinity.
    #[error("tensor `{key}` in {path}: element {index} is {value}; a checkpoint must hold finite weights")]
    NonFinite {
        key: String,
        path: PathBuf,
        /// The first such element's flat index.
        index: usize,
        /// Its value (NaN, inf or -inf).
        value: f64,
    },
    /// A file or folder could not be written (or moved into place).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// `a`, `b` (an empty prefix shows as ``).
fn quoted(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|item| format!("`{item}`")).collect();
    items.join(", ")
}
