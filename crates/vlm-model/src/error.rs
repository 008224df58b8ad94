use std::path::PathBuf;

use vlm_hf::HfError;
use vlm_lora::LoraError;
use vlm_qwen::QwenError;
use vlm_vision::VisionError;

use crate::ProjectorConfig;

/// Everything that can go wrong while building, running, saving or loading a
/// vision-language model.
///
/// Errors of the lower crates are wrapped as they are, so the file, tensor key or setting
/// they name reaches the user; the variants of this crate name the sample, the sizes or the
/// path involved.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading a config or safetensors file failed (missing tensor, wrong shape, unsupported
    /// dtype, I/O, malformed JSON), or writing one did; the inner error names the file and
    /// the key.
    #[error(transparent)]
    Hf(#[from] HfError),
    /// The vision tower failed to load or rejected its input.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The language model failed to load or rejected its input.
    #[error(transparent)]
    Language(#[from] QwenError),
    /// A LoRA adapter failed to save or load; the inner error names the file and tensor key.
    #[error(transparent)]
    Lora(#[from] LoraError),
    /// Two parts of the model disagree on a width: what one produces is not what the next
    /// one takes.
    #[error("{producer} produces width {produced}, but {consumer} takes width {expected}")]
    DimensionMismatch {
        /// The part whose output is fed on, e.g. "the vision encoder".
        producer: &'static str,
        /// The width it produces.
        produced: usize,
        /// The part that takes it, e.g. "the projector".
        consumer: &'static str,
        /// The width it takes.
        expected: usize,
    },
    /// A pixel-shuffle projector needs a square patch grid whose side the scale factor
    /// divides.
    #[error(
        "a pixel-shuffle projector with scale factor {scale_factor} needs a square grid of \
         patches whose side is a multiple of {scale_factor}, got {tokens} tokens per image"
    )]
    PatchGrid {
        /// Tokens per image coming out of the vision encoder.
        tokens: usize,
        /// The projector's scale factor.
        scale_factor: usize,
    },
    /// A sample's number of image placeholder tokens is not a whole number of images.
    #[error(
        "sample {sample} holds {found} image placeholder tokens, which is not a multiple of the \
         {tokens_per_image} tokens of one image"
    )]
    PlaceholderCount {
        /// Index of the sample in the batch.
        sample: usize,
        /// Placeholder tokens found in its ids.
        found: usize,
        /// Placeholder tokens one image takes.
        tokens_per_image: usize,
    },
    /// The placeholders of the batch call for another number of images than were given.
    #[error("the input ids hold placeholders for {in_ids} images, but {given} images were given")]
    ImageCount {
        /// Images implied by the placeholder tokens.
        in_ids: usize,
        /// Images in the pixel batch.
        given: usize,
    },
    /// Tensors of one call disagree in shape or are empty.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A label is neither -100 (ignored) nor a token of the vocabulary.
    #[error(
        "label {label} of sample {sample} at position {position} is outside the vocabulary of \
         {vocab_size} (use -100 to ignore a position)"
    )]
    LabelOutOfRange {
        /// Index of the sample in the batch.
        sample: usize,
        /// Position of the label in the sequence.
        position: usize,
        /// The label.
        label: i64,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// No position of the batch has a label to learn from after the causal shift, so the
    /// mean loss is undefined.
    #[error("the batch has no supervised token (every shifted label is -100)")]
    NoSupervisedTokens,
    /// A vision config names a `model_type` no tower of `vlm-vision` reads.
    #[error("{path} describes a `{model_type}` vision model, expected CLIP or SigLIP")]
    UnknownVisionModel {
        /// The config file.
        path: PathBuf,
        /// The `model_type` found (empty when absent).
        model_type: String,
    },
    /// A LLaVA `config.json` asks for something this crate does not implement.
    #[error("unsupported LLaVA configuration in {path}: {reason}")]
    UnsupportedLlava {
        /// The config file.
        path: PathBuf,
        /// What is unsupported, with the offending value.
        reason: String,
    },
    /// A checkpoint's `vlm_config.json` disagrees with the model it describes.
    #[error("{path}: `{field}` is {in_config} in the config but {in_model} in the model")]
    ConfigMismatch {
        /// The config file (or the checkpoint folder being written).
        path: PathBuf,
        /// The field that disagrees.
        field: &'static str,
        /// Its value in the config.
        in_config: String,
        /// Its value in the model.
        in_model: String,
    },
    /// A pretrained projector file (LLaVA's `--pretrain_mm_mlp_adapter`) is not of the kind
    /// and widths the model being built needs.
    #[error("{path} does not hold the {expected} this model needs: {reason}")]
    ProjectorMismatch {
        /// The projector file.
        path: PathBuf,
        /// The projector the model needs.
        expected: ProjectorConfig,
        /// What differs: the recorded projector, or the missing or misshapen tensor.
        reason: String,
    },
    /// A checkpoint names a LoRA adapter folder that this crate cannot load or did not find.
    #[error("LoRA adapter {path}: {reason}")]
    Adapter {
        /// The adapter folder.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// A checkpoint that a transformers `LlavaForConditionalGeneration` folder cannot
    /// express, or an export folder that may not be written.
    #[error("cannot export {path} as a transformers LLaVA folder: {reason}")]
    Export {
        /// The checkpoint (or the output folder).
        path: PathBuf,
        /// What cannot be exported, naming the field or part.
        reason: String,
    },
    /// A checkpoint being written records a tokenizer file that was not written into it.
    #[error("tokenizer {path}: named in the config but not written into the staged checkpoint")]
    MissingTokenizer {
        /// Where the tokenizer should be.
        path: PathBuf,
    },
}
