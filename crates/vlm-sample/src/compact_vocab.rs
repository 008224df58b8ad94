//! A compact tokenizer: a byte-level BPE `tokenizer.json` cut down to the tokens a dataset
//! uses, so that a small model (a few hundred embedding rows instead of Qwen's 151,646) can
//! ship a real `tokenizer.json`.
//!
//! The compact vocabulary holds the 256 byte-level base tokens, the used ids, every token
//! BPE builds on the way to them (the merge closure) and the used added tokens
//! (`<|im_start|>`, `<|image_pad|>`, ...), renumbered densely in their original order. Its
//! merges are the original merges among kept tokens, in their original rank order.
//!
//! Why the data tokenizes the same: BPE never splits a token, so the merges that build a
//! used token inside a word are exactly those that build it from its own bytes, which are
//! kept; every merge the full tokenizer applies to the data is therefore kept, and at each
//! step the lowest-ranked applicable merge is the same in both tokenizers (the compact
//! merges are a subset of the full ones). Other text still encodes, from the byte tokens up,
//! and decodes to the same string, only in more tokens.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde_json::{Map, Value};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use vlm_data::{EncodedSample, IGNORE_INDEX};
use vlm_hf::{read_config, write_json, HfError};

/// Why a compact tokenizer could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum CompactVocabError {
    /// Reading or writing a `tokenizer.json` failed (the inner error names the file).
    #[error(transparent)]
    Hf(#[from] HfError),
    /// The tokenizer is not a byte-level BPE tokenizer this module can cut down.
    #[error("not a byte-level BPE tokenizer.json: {reason}")]
    Unsupported {
        /// What is missing or malformed.
        reason: String,
    },
    /// A used id is neither in the vocabulary nor an added token.
    #[error("token id {id} is not in the tokenizer's vocabulary")]
    UnknownId {
        /// The id.
        id: u32,
    },
}

/// A byte-level BPE tokenizer cut down to the tokens a dataset uses, with the map from the
/// original ids to the compact ones.
#[derive(Debug, Clone)]
pub struct CompactVocab {
    tokenizer: Value,
    new_ids: BTreeMap<u32, u32>,
    old_ids: Vec<u32>,
}

impl CompactVocab {
    /// Reads the `tokenizer.json` at `path` and cuts it down to the ids in `used` (see
    /// [`CompactVocab::new`]).
    pub fn from_file(
        path: impl AsRef<Path>,
        used: impl IntoIterator<Item = u32>,
    ) -> Result<Self, CompactVocabError> {
        let tokenizer: Value = read_config(path.as_ref())?;
        Self::new(&tokenizer, used)
    }

    /// Cuts the parsed `tokenizer.json` down to the ids in `used` (ids of the original
    /// tokenizer: vocabulary tokens and added tokens) and what they need: the byte-level
    /// base tokens and the merge closure.
    pub fn new(
        tokenizer: &Value,
        used: impl IntoIterator<Item = u32>,
    ) -> Result<Self, CompactVocabError> {
        let bpe = Bpe::parse(tokenizer)?;
        let added = added_tokens(tokenizer)?;
        let mut kept_tokens = base_tokens(&bpe)?;
        let mut kept_added = BTreeSet::new();
        for id in used {
            match (bpe.tokens.get(&id), added.contains_key(&id)) {
                (Some(token), _) => kept_tokens.extend(bpe.closure(token)),
                (None, true) => {
                    kept_added.insert(id);
                }
                (None, false) => return Err(CompactVocabError::UnknownId { id }),
            }
        }
        let mut kept_ids = kept_tokens
            .iter()
            .map(|token| bpe.id(token))
            .collect::<Result<BTreeSet<u32>, _>>()?;
        kept_ids.extend(&kept_added);
        let old_ids: Vec<u32> = kept_ids.into_iter().collect();
        let new_ids = (0u32..)
            .zip(&old_ids)
            .map(|(new, &old)| (old, new))
            .collect();
        let tokenizer = compact_json(tokenizer, &bpe, &kept_tokens, &new_ids)?;
        Ok(Self {
            tokenizer,
            new_ids,
            old_ids,
        })
    }

    /// The compact `tokenizer.json`.
    pub fn tokenizer_json(&self) -> &Value {
        &self.tokenizer
    }

    /// Writes the compact `tokenizer.json` to `path`, atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), CompactVocabError> {
        Ok(write_json(path.as_ref(), &self.tokenizer)?)
    }

    /// Original id -> compact id, for every kept token.
    pub fn id_map(&self) -> &BTreeMap<u32, u32> {
        &self.new_ids
    }

    /// The compact id of an original id, if the token is kept.
    pub fn new_id(&self, old: u32) -> Option<u32> {
        self.new_ids.get(&old).copied()
    }

    /// The original id of a compact id.
    pub fn old_id(&self, new: u32) -> Option<u32> {
        self.old_ids.get(usize::try_from(new).ok()?).copied()
    }

    /// The compact id of an original id that must be kept.
    pub fn compact_id(&self, id: u32) -> Result<u32, CompactVocabError> {
        self.new_id(id).ok_or(CompactVocabError::UnknownId { id })
    }

    /// Original ids in compact ids; every id must be kept.
    pub fn compact_ids(&self, ids: &[u32]) -> Result<Vec<u32>, CompactVocabError> {
        ids.iter().map(|&id| self.compact_id(id)).collect()
    }

    /// A sample encoded with the original tokenizer in compact ids: its input ids and its
    /// labels (those not [`IGNORE_INDEX`]); every id must be kept.
    pub fn compact_sample(
        &self,
        sample: EncodedSample,
    ) -> Result<EncodedSample, CompactVocabError> {
        let input_ids = self.compact_ids(&sample.input_ids)?;
        let labels = sample
            .labels
            .iter()
            .map(|&label| match u32::try_from(label) {
                Ok(id) if label != IGNORE_INDEX => Ok(i64::from(self.compact_id(id)?)),
                _ => Ok(label),
            })
            .collect::<Result<_, CompactVocabError>>()?;
        Ok(EncodedSample {
            input_ids,
            labels,
            ..sample
        })
    }

    /// Number of tokens in the compact vocabulary (added tokens included): the embedding
    /// rows a model over it needs.
    pub fn len(&self) -> usize {
        self.old_ids.len()
    }

    /// Whether the vocabulary is empty (never, for a byte-level tokenizer).
    pub fn is_empty(&self) -> bool {
        self.old_ids.is_empty()
    }
}

/// The BPE model of a `tokenizer.json`: vocabulary and ranked merges.
struct Bpe<'a> {
    vocab: HashMap<&'a str, u32>,
    tokens: HashMap<u32, &'a str>,
    /// Each merge's two parts, in rank order, with the JSON entry it came from.
    merges: Vec<(&'a str, &'a str, &'a Value)>,
    ranks: HashMap<(&'a str, &'a str), usize>,
}

impl<'a> Bpe<'a> {
    fn parse(tokenizer: &'a Value) -> Result<Self, CompactVocabError> {
        let model = &tokenizer["model"];
        if model["type"] != "BPE" || !is_byte_level(&tokenizer["pre_tokenizer"]) {
            return unsupported("the model must be BPE behind a ByteLevel pre-tokenizer");
        }
        let vocab = model["vocab"]
            .as_object()
            .map(parse_vocab)
            .unwrap_or_else(|| unsupported("model.vocab is not an object"))?;
        let tokens = vocab.iter().map(|(&token, &id)| (id, token)).collect();
        let merges: Vec<_> = model["merges"]
            .as_array()
            .map(|merges| merges.iter().map(parse_merge).collect::<Result<_, _>>())
            .unwrap_or_else(|| unsupported("model.merges is not an array"))?;
        let ranks = merges
            .iter()
            .enumerate()
            .map(|(rank, &(left, right, _))| ((left, right), rank))
            .collect();
        Ok(Self {
            vocab,
            tokens,
            merges,
            ranks,
        })
    }

    /// The id of a vocabulary token; a merge result missing from the vocabulary is an error.
    fn id(&self, token: &str) -> Result<u32, CompactVocabError> {
        match self.vocab.get(token) {
            Some(&id) => Ok(id),
            None => unsupported(format!("merge result {token:?} is not in the vocabulary")),
        }
    }

    /// `token` and every token BPE forms while encoding its bytes alone.
    fn closure(&self, token: &'a str) -> Vec<String> {
        let mut symbols: Vec<String> = token.chars().map(String::from).collect();
        let mut formed = vec![token.to_string()];
        while let Some(at) = self.lowest_ranked_pair(&symbols) {
            let right = symbols.remove(at + 1);
            symbols[at].push_str(&right);
            formed.push(symbols[at].clone());
        }
        formed
    }

    /// The position of the leftmost adjacent pair with the lowest merge rank.
    fn lowest_ranked_pair(&self, symbols: &[String]) -> Option<usize> {
        symbols
            .windows(2)
            .enumerate()
            .filter_map(|(at, pair)| {
                let rank = self.ranks.get(&(pair[0].as_str(), pair[1].as_str()))?;
                Some((*rank, at))
            })
            .min()
            .map(|(_, at)| at)
    }
}

fn parse_vocab(vocab: &Map<String, Value>) -> Result<HashMap<&str, u32>, CompactVocabError> {
    vocab
        .iter()
        .map(|(token, id)| match id.as_u64().map(u32::try_from) {
            Some(Ok(id)) => Ok((token.as_str(), id)),
            _ => unsupported(format!("vocabulary id of {token:?} is not a u32: {id}")),
        })
        .collect()
}

/// A merge in either of the two forms `tokenizers` writes: `"a b"` or `["a", "b"]`.
fn parse_merge(merge: &Value) -> Result<(&str, &str, &Value), CompactVocabError> {
    let parts = match merge {
        Value::String(text) => text.split_once(' '),
        Value::Array(pair) => match pair.as_slice() {
            [Value::String(left), Value::String(right)] => Some((left.as_str(), right.as_str())),
            _ => None,
        },
        _ => None,
    };
    match parts {
        Some((left, right)) => Ok((left, right, merge)),
        None => unsupported(format!("malformed merge {merge}")),
    }
}

/// Whether a pre-tokenizer is, or contains, a ByteLevel one.
fn is_byte_level(pre_tokenizer: &Value) -> bool {
    pre_tokenizer["type"] == "ByteLevel"
        || pre_tokenizer["pretokenizers"]
            .as_array()
            .is_some_and(|inner| inner.iter().any(is_byte_level))
}

/// The 256 byte-level base tokens, all of which a byte-level vocabulary holds.
fn base_tokens(bpe: &Bpe<'_>) -> Result<HashSet<String>, CompactVocabError> {
    let base: HashSet<String> = ByteLevel::alphabet()
        .into_iter()
        .map(String::from)
        .collect();
    match base
        .iter()
        .find(|token| !bpe.vocab.contains_key(token.as_str()))
    {
        Some(missing) => unsupported(format!("byte-level base token {missing:?} is missing")),
        None => Ok(base),
    }
}

/// The added tokens (`added_tokens`), by id.
fn added_tokens(tokenizer: &Value) -> Result<HashMap<u32, &Value>, CompactVocabError> {
    let Some(added) = tokenizer["added_tokens"].as_array() else {
        return Ok(HashMap::new());
    };
    added
        .iter()
        .map(|token| match token["id"].as_u64().map(u32::try_from) {
            Some(Ok(id)) => Ok((id, token)),
            _ => unsupported(format!("added token without a u32 id: {token}")),
        })
        .collect()
}

/// The original `tokenizer.json` with the vocabulary, merges and added tokens cut down to
/// the kept ones and renumbered by `new_ids`.
fn compact_json(
    tokenizer: &Value,
    bpe: &Bpe<'_>,
    kept_tokens: &HashSet<String>,
    new_ids: &BTreeMap<u32, u32>,
) -> Result<Value, CompactVocabError> {
    let vocab: Map<String, Value> = kept_tokens
        .iter()
        .map(|token| {
            (
                token.clone(),
                Value::from(new_ids[&bpe.vocab[token.as_str()]]),
            )
        })
        .collect();
    let kept = |token: &str| kept_tokens.contains(token);
    let merges: Vec<Value> = bpe
        .merges
        .iter()
        .filter(|(left, right, _)| kept(left) && kept(right) && kept(&format!("{left}{right}")))
        .map(|(_, _, entry)| (*entry).clone())
        .collect();
    let added: Vec<Value> = added_tokens(tokenizer)?
        .into_iter()
        .filter_map(|(id, token)| Some((*new_ids.get(&id)?, token)))
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(id, token)| with_id(token, id))
        .collect();
    let mut compact = tokenizer.clone();
    compact["model"]["vocab"] = Value::Object(vocab);
    compact["model"]["merges"] = Value::Array(merges);
    compact["added_tokens"] = Value::Array(added);
    Ok(compact)
}

/// An added-token entry renumbered to `id`.
fn with_id(token: &Value, id: u32) -> Value {
    let mut token = token.clone();
    token["id"] = Value::from(id);
    token
}

fn unsupported<T>(reason: impl Into<String>) -> Result<T, CompactVocabError> {
    Err(CompactVocabError::Unsupported {
        reason: reason.into(),
    })
}
