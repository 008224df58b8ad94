//! Hugging Face model folders for vlm.
//!
//! Every model crate (vision towers, Qwen, LoRA adapters, the composed VLM) reads the same two
//! things from a downloaded Hugging Face folder: a JSON config and safetensors weights, possibly
//! sharded and stored in f32, bf16 or f16. This crate does that once, with errors that name the
//! file, the tensor key and what was expected, and it streams: tensors are read one at a time
//! from memory-mapped files, so loading a checkpoint never holds two copies of it in RAM.
//! [`WeightStore::linear`] is the one place PyTorch's `[out, in]` linear layout becomes Burn's
//! `[in, out]` ([`apply_linear`] applies one as a single 2-D product), and [`join_key`] how a composed model's key prefix goes on top of a module's
//! own names.
//! Saving goes back through the same crate: [`SafetensorsWriter`] and [`write_json`] write
//! files atomically, [`StagedDir`] whole folders (checkpoints). [`resolve_model_path`] turns a Hugging Face hub id
//! (`Qwen/Qwen2.5-0.5B-Instruct[@revision]`) into its snapshot folder in the local cache.
//! [`read_bounded`] reads any whole file a user names with a size limit. [`Precision`] is the
//! float type a model is loaded in (`--dtype`): the loaders take
//! `precision.on::<B>(&device)?` where they take a device, and half weights stay half.

mod config;
mod dtype;
mod error;
mod hub;
mod linear;
mod precision;
mod preprocessor;
mod read;
mod shard;
mod weights;
mod write;

pub use config::{
    parse_config_section, read_config, read_config_section, ConfigSection, TEXT_CONFIG,
    VISION_CONFIG,
};
pub use dtype::{torch_dtype_from_name, torch_dtype_name};
pub use error::HfError;
pub use hub::{is_model_file, resolve_model_path, HubCache, HubError, HubId, ModelSource};
pub use linear::{apply_linear, flat_matmul};
pub use precision::{Precision, UnknownPrecision};
pub use preprocessor::{
    CropSize, ImageProcessorType, ImageSize, PreprocessorConfig, Resample, IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD,
};
pub use read::{
    read_bounded, read_bounded_string, read_line_bounded, MAX_CONFIG_BYTES, MAX_IMAGE_FILE_BYTES,
    MAX_RECORD_BYTES, MAX_TOKENIZER_BYTES,
};
pub use weights::{join_key, WeightInfo, WeightStore};
pub use write::{create_dir_all, write_atomic, write_json, SafetensorsWriter, StagedDir};
