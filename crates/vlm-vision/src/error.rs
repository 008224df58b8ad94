use std::path::PathBuf;

use vlm_hf::HfError;

/// Everything that can go wrong while loading or running a vision tower.
#[derive(Debug, thiserror::Error)]
pub enum VisionError {
    /// Reading `config.json` or the safetensors weights failed (missing tensor, wrong shape,
    /// unsupported dtype, I/O, malformed JSON or an unknown `hidden_act`); the inner error
    /// names the file and the key.
    #[error(transparent)]
    Hf(#[from] HfError),
    /// `config.json` (or its `vision_config`) belongs to another model family.
    #[error("{path} describes a `{model_type}` model, expected one of {expected:?}")]
    WrongModelType {
        /// The config file.
        path: PathBuf,
        /// The `model_type` found in the file.
        model_type: String,
        /// The `model_type` values this tower reads.
        expected: &'static [&'static str],
    },
    /// A `config.json` field asks for something this tower does not compute (dropout in
    /// attention) or holds a value that cannot be right (a non-positive `layer_norm_eps`, a
    /// zero size, a width the heads do not divide).
    #[error("unsupported vision configuration in {path}: field `{field}`: {reason}")]
    UnsupportedField {
        /// The config file.
        path: PathBuf,
        /// The field at fault (inside `vision_config` where the file nests it).
        field: String,
        /// What is wrong, with the offending value.
        reason: String,
    },
    /// The config's sizes cannot make a tower (a zero size, a width the heads do not divide,
    /// a patch larger than the image). Read from a file, the same problem is an
    /// [`UnsupportedField`](Self::UnsupportedField) naming the file.
    #[error("invalid vision tower configuration: field `{field}`: {reason}")]
    InvalidConfig {
        /// The field at fault.
        field: &'static str,
        /// What is wrong, with the offending values.
        reason: String,
    },
    /// A tower folder has no `preprocessor_config.json`, so how its images must be prepared
    /// is unknown.
    #[error(
        "{path} not found: a vision tower needs the image processor settings it was trained \
         with (copy `preprocessor_config.json` from the Hugging Face model into the folder)"
    )]
    MissingPreprocessorConfig {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The requested feature layer does not exist in a tower with this many layers.
    #[error(
        "vision_feature_layer {layer} is out of range for a tower with {num_layers} layers \
         (valid: -{} ..= {num_layers})",
        num_layers + 1
    )]
    FeatureLayerOutOfRange {
        /// The requested layer, as in Hugging Face's `vision_feature_layer`.
        layer: i64,
        /// The number of encoder layers of the tower.
        num_layers: usize,
    },
    /// The pixel tensor given to a forward pass does not have the shape the tower expects.
    #[error(
        "pixel values of shape {actual:?} do not fit this tower: expected [batch, {channels}, \
         {image_size}, {image_size}]"
    )]
    PixelShape {
        /// The shape received, `[batch, channels, height, width]`.
        actual: [usize; 4],
        /// The number of channels the patch embedding takes.
        channels: usize,
        /// The side of the square image the tower was trained on.
        image_size: usize,
    },
}

impl VisionError {
    /// This error as found in the config file `path`: an [`InvalidConfig`](Self::InvalidConfig)
    /// becomes an [`UnsupportedField`](Self::UnsupportedField) naming the file; others pass.
    pub(crate) fn in_file(self, path: &std::path::Path) -> Self {
        match self {
            Self::InvalidConfig { field, reason } => Self::UnsupportedField {
                path: path.to_path_buf(),
                field: field.to_string(),
                reason,
            },
            other => other,
        }
    }
}
