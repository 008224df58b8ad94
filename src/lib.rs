//! **vlm**: build, train and chat with LLaVA-style vision-language models in Rust, on Burn.
//!
//! This facade re-exports the layered crates and picks the backend for the example programs
//! through Cargo features (see [`backend`]). Library code stays generic over
//! [`burn::tensor::backend::Backend`]; only programs choose a concrete one.

pub mod backend;
pub mod cli;

pub use burn;
pub use vlm_data as data;
pub use vlm_hf as hf;
pub use vlm_image as image;
pub use vlm_lora as lora;
pub use vlm_model as model;
pub use vlm_qwen as qwen;
pub use vlm_sample as sample;
pub use vlm_train as train;
pub use vlm_vision as vision;
