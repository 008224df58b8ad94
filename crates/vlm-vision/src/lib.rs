//! Vision towers for vlm: the [`VisionEncoder`] trait and frozen CLIP / SigLIP ViTs loaded
//! from Hugging Face checkpoints.
//!
//! A LLaVA-style model turns an image into a sequence of feature vectors with a pretrained
//! vision transformer, picks one hidden layer ([`FeatureSelection`], LLaVA's
//! `vision_feature_layer` and `vision_feature_select_strategy`) and projects it into the
//! language model. [`ClipVisionTower`] and [`SiglipVisionTower`] load `CLIPVisionModel`,
//! `CLIPModel`, `SiglipVisionModel` and `SiglipModel` folders (or the tower inside a LLaVA
//! checkpoint, through `from_store` and a key prefix) and match transformers' outputs. Each
//! tower carries its folder's `preprocessor_config.json` ([`VisionEncoder::preprocessing`]):
//! the pixels it expects. `save` writes a tower back as a Hugging Face folder (a tower
//! trained or built here, shipped in the standard layout).
//!
//! ```no_run
//! use burn::tensor::{backend::Backend, Tensor};
//! use vlm_vision::{ClipVisionTower, FeatureSelection, VisionEncoder, VisionError};
//!
//! fn image_features<B: Backend>(device: &B::Device) -> Result<Tensor<B, 3>, VisionError> {
//!     let tower = ClipVisionTower::<B>::load(
//!         "path/to/clip-vit-large-patch14-336",
//!         FeatureSelection::default(), // penultimate layer, CLS dropped: LLaVA-1.5
//!         device,
//!     )?;
//!     // `tower.preprocessing()` says how to make real pixels (vlm_image::ImageProcessor).
//!     let size = tower.image_size();
//!     let pixels = Tensor::zeros([1, 3, size, size], device);
//!     tower.forward(pixels) // [1, 576, 1024]
//! }
//! ```
//!
//! Towers are frozen: every parameter is created with `require_grad = false`. Burn's autodiff
//! backend records an operation only when one of its inputs is tracked, so a tower loaded
//! straight on an `AutodiffBackend` (inside a VLM trained on top of it) runs without building
//! a graph, its features are constants and optimisers find no gradient for its weights
//! (`tests/frozen.rs` checks this). `AutodiffModule::valid` gives the same tower on the inner
//! backend for evaluation.
//!
//! Depends only on `vlm-hf` (weights and configs).

#![warn(missing_docs)]

mod activation;
mod attention;
mod clip;
mod config;
mod embeddings;
mod encoder;
mod error;
mod layer;
mod mlp;
mod output;
mod save;
mod selection;
mod siglip;
mod vit;
mod weights;

pub use activation::Activation;
pub use clip::{ClipVisionConfig, ClipVisionTower};
pub use config::read_preprocessing;
pub use encoder::VisionEncoder;
pub use error::VisionError;
pub use output::VisionOutput;
pub use selection::{FeatureSelection, SelectStrategy};
pub use siglip::{SiglipVisionConfig, SiglipVisionTower};
pub use weights::find_tower_prefix;
