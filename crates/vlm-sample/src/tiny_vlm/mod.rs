//! The quickstart's model: a tiny LLaVA of a SigLIP vision tower, nanoVLM's pixel-shuffle
//! projector and a Qwen2-architecture LLM, sized by [`TinyVlmSizes`]. It starts from two
//! Hugging Face folders with random weights ([`write_random_qwen2`], [`write_random_siglip`])
//! loaded like any checkpoint, and is saved, trained, as folders that `chat` and `serve`
//! load ([`save_tiny_vlm`]).

mod random_folder;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use vlm_data::chat::Marker;
use vlm_data::{EncodedSample, SampleEncoder, TokenizerError};
use vlm_hf::{ImageSize, PreprocessorConfig};
use vlm_model::{
    ChatTemplateConfig, ModelError, PixelShuffleProjector, StagedCheckpoint, VisionLanguageModel,
    VisionTowerConfig, VlmConfig, TOKENIZER_FILE,
};
use vlm_qwen::{QwenError, QwenModel};
use vlm_vision::{FeatureSelection, SelectStrategy, SiglipVisionTower, VisionError};

use crate::questions::Asked;
use crate::{CompactVocab, CompactVocabError};

pub use random_folder::{write_random_qwen2, write_random_siglip};

/// The tiny model's type.
pub type TinyVlm<B> =
    VisionLanguageModel<B, SiglipVisionTower<B>, PixelShuffleProjector<B>, QwenModel<B>>;

/// Side of the model's square images in pixels.
pub const IMAGE_SIDE: usize = 64;

/// The vision features the LLM sees: the last layer, every patch.
pub const SELECTION: FeatureSelection = FeatureSelection {
    layer: -1,
    strategy: SelectStrategy::Full,
};

/// The sizes of the model, as command-line flags so that programs can explore them without
/// editing code.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinyVlmSizes {
    /// Side of a vision patch in pixels (64 must be a multiple of it).
    #[arg(long, default_value_t = 8)]
    pub patch: usize,
    /// Width of the vision tower.
    #[arg(long, default_value_t = 96)]
    pub vit_dim: usize,
    /// Encoder layers of the vision tower.
    #[arg(long, default_value_t = 2)]
    pub vit_layers: usize,
    /// Attention heads of the vision tower.
    #[arg(long, default_value_t = 4)]
    pub vit_heads: usize,
    /// Pixel-shuffle factor of the projector: each `s x s` square of patches becomes one
    /// image token.
    #[arg(long, default_value_t = 2)]
    pub shuffle: usize,
    /// Width of the LLM.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Width of the LLM's MLP.
    #[arg(long, default_value_t = 256)]
    pub intermediate: usize,
    /// Decoder layers of the LLM.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Query heads of the LLM.
    #[arg(long, default_value_t = 8)]
    pub heads: usize,
    /// Key/value heads of the LLM (grouped-query attention; must divide `heads`).
    #[arg(long, default_value_t = 4)]
    pub kv_heads: usize,
}

impl TinyVlmSizes {
    /// Image tokens per image after the projector: the patches of an
    /// [`IMAGE_SIDE`]-pixel image, shuffled `shuffle x shuffle` into one token.
    pub fn tokens_per_image(&self) -> usize {
        (IMAGE_SIDE / self.patch / self.shuffle).pow(2)
    }
}

/// The image processing of the model: [`IMAGE_SIDE`] pixels square, rescaled and normalised
/// to [-1, 1].
pub fn preprocessing() -> PreprocessorConfig {
    PreprocessorConfig {
        size: ImageSize::Exact {
            height: IMAGE_SIDE as u32,
            width: IMAGE_SIDE as u32,
        },
        image_mean: [0.5; 3],
        image_std: [0.5; 3],
        ..PreprocessorConfig::siglip_default()
    }
}

/// The Qwen ids the tiny model's compact vocabulary keeps: the padding, image and
/// `<|im_end|>` tokens, every id of the training samples and of the questions' prompts, and
/// those of the reference answers (so that a right answer can be written).
pub fn vocabulary_ids(
    encoder: &SampleEncoder,
    train: &[EncodedSample],
    prompts: &[Vec<u32>],
    questions: &[Asked],
) -> Result<BTreeSet<u32>, TokenizerError> {
    let im_end = encoder.tokenizer().token_id(Marker::ImEnd.as_str())?;
    let mut used: BTreeSet<u32> = [encoder.pad_id(), encoder.image_token_id(), im_end].into();
    used.extend(train.iter().flat_map(|s| s.input_ids.iter().copied()));
    used.extend(prompts.iter().flatten().copied());
    for asked in questions {
        used.extend(encoder.tokenizer().encode(&asked.question.reference)?);
    }
    Ok(used)
}

/// Why writing a tiny model's folders failed.
#[derive(Debug, thiserror::Error)]
pub enum TinyVlmError {
    /// A file or folder could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration could not be serialized.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The weights could not be written.
    #[error(transparent)]
    Hf(#[from] vlm_hf::HfError),
    /// The LLM could not be saved.
    #[error(transparent)]
    Qwen(#[from] QwenError),
    /// The vision tower could not be saved.
    #[error(transparent)]
    Vision(#[from] VisionError),
    /// The vlm checkpoint could not be written.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The compact tokenizer could not be written.
    #[error(transparent)]
    Vocab(#[from] CompactVocabError),
}

/// Writes the trained model as `dir/{llm, vision, checkpoint}`: the LLM as a Hugging Face
/// Qwen2 folder with its compact `tokenizer.json`, the vision tower as a SigLIP folder, and a
/// vlm checkpoint (projector, a copy of the tokenizer and `vlm_config.json` naming `../llm`,
/// `../vision` and its `tokenizer.json`) that `chat` and `serve` load by default. `llm_init`
/// is the folder the LLM was loaded from (its `config.json` is kept). Returns the checkpoint
/// folder.
pub fn save_tiny_vlm<B: Backend>(
    model: &TinyVlm<B>,
    vocab: &CompactVocab,
    llm_init: &Path,
    dir: &Path,
) -> Result<PathBuf, TinyVlmError> {
    let llm = dir.join("llm");
    model
        .language_model()
        .save_merged(&llm, llm_init.join("config.json"))?;
    vocab.write(llm.join("tokenizer.json"))?;
    model.vision().save(dir.join("vision"))?;
    let vision = VisionTowerConfig::new("../vision", SELECTION);
    let template = ChatTemplateConfig {
        name: "chatml".into(),
        system_prompt: None,
    };
    let mut config = VlmConfig::for_model(model, PathBuf::from("../llm"), vision, template);
    config.tokenizer = Some(PathBuf::from(TOKENIZER_FILE));
    let staged = StagedCheckpoint::new(dir.join("checkpoint"), model, &config)?;
    vocab.write(staged.path().join(TOKENIZER_FILE))?;
    Ok(staged.commit()?)
}
