//! The text tokenizer: Hugging Face `tokenizer.json` files through the `tokenizers` crate.
//!
//! Qwen2 / Qwen2.5 / Qwen3 folders ship a `tokenizer.json`; load them with
//! [`Tokenizer::from_model_dir`] or [`Tokenizer::from_file`]. Qwen-7B (v1) folders ship only
//! `qwen.tiktoken` (tiktoken BPE ranks read by Python code): no on-the-fly conversion is done
//! here. This repository commits the checked conversion of that file,
//! `data/tokenizer/qwen_v1/tokenizer.json` (token-for-token equal to tiktoken, see
//! `data/tokenizer/README.md`); pass it to [`Tokenizer::from_file`]. [`Tokenizer::from_model_dir`]
//! on a v1 folder fails with [`TokenizerError::TiktokenOnly`], which says exactly that.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a tokenizer could not be loaded or used. Every variant names the tokenizer file or folder.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// `tokenizer.json` is missing, unreadable or not a valid tokenizer.
    #[error("cannot load tokenizer {}: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    /// The model folder has only a `qwen.tiktoken` (Qwen-7B v1 layout).
    #[error(
        "{} has no tokenizer.json, only qwen.tiktoken (the Qwen-7B v1 layout, which this crate \
         does not convert at run time): load the committed conversion \
         data/tokenizer/qwen_v1/tokenizer.json of the vlm repository with Tokenizer::from_file",
        dir.display()
    )]
    TiktokenOnly { dir: PathBuf },
    /// The model folder has no tokenizer file at all.
    #[error("{} has no tokenizer.json (pass the tokenizer file with Tokenizer::from_file)", dir.display())]
    NotFound { dir: PathBuf },
    /// A token looked up by name is not in the vocabulary (e.g. `<|image_pad|>` in Qwen v1).
    #[error("token {name:?} is not in the vocabulary of tokenizer {}", path.display())]
    UnknownToken { name: String, path: PathBuf },
    /// The tokenizer rejected a text.
    #[error("tokenizer {} cannot encode text: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
    /// The tokenizer rejected a list of ids (e.g. an id beyond the vocabulary).
    #[error("tokenizer {} cannot decode ids: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: tokenizers::Error,
    },
}

/// A loaded `tokenizer.json`, remembering its path for error messages. Cloning is cheap (the
/// vocabulary is shared).
///
/// Encoding never adds BOS / EOS (Qwen adds none anyway): the chat template writes every
/// marker itself. Added tokens written in text (`<|im_end|>`) are recognised as single ids, as
/// Hugging Face tokenizers do.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    path: PathBuf,
    special_ids: Arc<HashSet<u32>>,
}

impl Tokenizer {
    /// The file name Hugging Face uses.
    pub const FILE_NAME: &'static str = "tokenizer.json";

    /// Loads a `tokenizer.json` file (of at most
    /// [`MAX_TOKENIZER_BYTES`](vlm_hf::MAX_TOKENIZER_BYTES)).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref().to_path_buf();
        let load_error = |source| TokenizerError::Load {
            path: path.clone(),
            source,
        };
        let bytes = vlm_hf::read_bounded(&path, vlm_hf::MAX_TOKENIZER_BYTES)
            .map_err(|e| load_error(e.into()))?;
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(load_error)?;
        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, token)| token.special)
            .map(|(id, _)| id)
            .collect();
        Ok(Self {
            inner: Arc::new(inner),
            path,
            special_ids: Arc::new(special_ids),
        })
    }

    /// Loads `tokenizer.json` from a Hugging Face model folder. A folder with only
    /// `qwen.tiktoken` gives [`TokenizerError::TiktokenOnly`] (see the module docs).
    pub fn from_model_dir(dir: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let dir = dir.as_ref();
        let file = dir.join(Self::FILE_NAME);
        if file.is_file() {
            return Self::from_file(file);
        }
        let dir = dir.to_path_buf();
        if dir.join("qwen.tiktoken").is_file() {
            Err(TokenizerError::TiktokenOnly { dir })
        } else {
            Err(TokenizerError::NotFound { dir })
        }
    }

    /// Loads a `tokenizer.json` file, or the one of a model folder when `path` is a folder
    /// (as [`from_model_dir`](Self::from_model_dir)), so a `--tokenizer` flag takes either.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        match path.is_dir() {
            true => Self::from_model_dir(path),
            false => Self::from_file(path),
        }
    }

    /// The file this tokenizer was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The id of a token given by name, e.g. `token_id("<|im_end|>")`; an error naming the
    /// token and the file when the vocabulary lacks it.
    pub fn token_id(&self, name: &str) -> Result<u32, TokenizerError> {
        self.inner
            .token_to_id(name)
            .ok_or_else(|| TokenizerError::UnknownToken {
                name: name.to_owned(),
                path: self.path.clone(),
            })
    }

    /// Whether `id` is a special added token (`<|im_start|>`, `<|image_pad|>`, ...): such ids
    /// must come from the chat template or the image expansion, never from data text.
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }

    /// Vocabulary size including added tokens (the embedding may have more rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, without adding any special token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.inner
            .encode_fast(text, false)
            .map(|encoding| encoding.get_ids().to_vec())
            .map_err(|source| TokenizerError::Encode {
                path: self.path.clone(),
                source,
            })
    }

    /// The text of `ids`; special tokens are dropped when `skip_special_tokens` is set.
    /// Bytes of a character cut by the end of `ids` come out as U+FFFD (use
    /// [`TextStreamer`](crate::TextStreamer) to print tokens as they arrive).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|source| TokenizerError::Decode {
                path: self.path.clone(),
                source,
            })
    }

    /// The underlying `tokenizers` tokenizer, for what this wrapper does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
