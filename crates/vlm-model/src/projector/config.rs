use std::fmt;

use serde::{Deserialize, Serialize};

/// Which projector a checkpoint holds and its widths, as recorded in `vlm_config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectorConfig {
    /// The architecture.
    pub kind: ProjectorKind,
    /// Width of the vision features it takes.
    pub input_dim: usize,
    /// Width of the embeddings it makes (the language model's hidden size).
    pub output_dim: usize,
}

/// The projector architectures of this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ProjectorKind {
    /// LLaVA-1.5's `mlp2x_gelu`: Linear, exact GELU, Linear; one embedding per feature.
    Mlp2xGelu,
    /// nanoVLM's modality projector: `scale_factor x scale_factor` neighbouring patches
    /// concatenated into one token, then one Linear without bias; `scale_factor^2` times
    /// fewer image tokens.
    PixelShuffle {
        /// Side of the square of patches merged into one token.
        scale_factor: usize,
    },
}

/// `mlp2x_gelu projector from width 1024 to 896`, for messages.
impl fmt::Display for ProjectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ProjectorKind::Mlp2xGelu => write!(f, "mlp2x_gelu")?,
            ProjectorKind::PixelShuffle { scale_factor } => {
                write!(f, "pixel_shuffle (scale factor {scale_factor})")?
            }
        }
        write!(
            f,
            " projector from width {} to {}",
            self.input_dim, self.output_dim
        )
    }
}
