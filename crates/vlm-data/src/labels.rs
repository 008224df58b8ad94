//! Encoding a conversation into `input_ids` and training `labels`.
//!
//! The chat template's [`Segment`]s are tokenised one by one (never the whole string, whose
//! token boundaries would have to be guessed back), so every id is known to come from a prompt,
//! an answer or the image. Segments only break where Hugging Face's tokenisation of the whole
//! rendered text breaks anyway (at special tokens), and between a header and an answer: there
//! the ids equal the whole-string ones unless the answer starts with a newline, which then is
//! not merged with the header's `\n` (as in Qwen's own fine-tuning scripts; prompts are encoded
//! the same way, so training and inference agree).
//!
//! - the `<image>` placeholder becomes exactly `tokens_per_image` copies of the image token id
//!   (the llava-hf convention: one id per vision-encoder output token, default
//!   `<|image_pad|>`), which the model later replaces by the projected image features;
//! - labels are the ids on supervised positions (each assistant answer and its `<|im_end|>`)
//!   and [`IGNORE_INDEX`] (-100) everywhere else: system, user, headers, image, the `\n` after
//!   `<|im_end|>` (see [`ChatTemplate`]), and later padding;
//! - sequences longer than `max_len` are cut at the end, never inside the image run: a record
//!   whose image run does not fit is rejected ([`SkipReason::ImageDoesNotFit`]), as is one with
//!   no supervised token left ([`SkipReason::NothingSupervised`]).

use std::ops::Range;

use crate::chat::{Marker, Piece, Segment};
use crate::skip::{check_structure, Purpose};
use crate::{ChatTemplate, Conversation, InvalidRecord, SkipReason, Tokenizer, TokenizerError};

/// The label of a position the loss ignores (PyTorch's `CrossEntropyLoss` default).
pub const IGNORE_INDEX: i64 = -100;

/// The targets a causal language model learns from a row-major `[batch, seq_len]` label
/// matrix (the label shift, in its one home): the logits at position `j` predict label
/// `j + 1`, so each row's first label is never a target, and [`IGNORE_INDEX`] targets are
/// skipped. Yields `(sample, position, label)` with `position` in `1..seq_len`.
pub fn supervised_targets(
    labels: &[i64],
    seq_len: usize,
) -> impl Iterator<Item = (usize, usize, i64)> + '_ {
    labels
        .chunks(seq_len.max(1))
        .enumerate()
        .flat_map(|(sample, row)| {
            row.iter()
                .enumerate()
                .skip(1)
                .filter(|&(_, &label)| label != IGNORE_INDEX)
                .map(move |(position, &label)| (sample, position, label))
        })
}

/// Why a [`SampleEncoder`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// The tokenizer lacks a token the encoder needs.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A setting that would make every sample wrong or empty.
    #[error("invalid encoder config: {0}")]
    Config(&'static str),
}

/// Settings of the [`SampleEncoder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderConfig {
    /// The token repeated for each image position (default `<|image_pad|>`).
    pub image_token: String,
    /// How many image tokens an image becomes: the vision encoder's output tokens per image
    /// (e.g. 576 for CLIP ViT-L/14 at 336 px, 196 for a 224 px ViT-B/16).
    pub tokens_per_image: usize,
    /// The longest training sequence, image tokens included.
    pub max_len: usize,
    /// The token written into padding positions (default `<|endoftext|>`, Qwen's pad token).
    pub pad_token: String,
}

impl EncoderConfig {
    /// Qwen defaults (`<|image_pad|>`, pad `<|endoftext|>`) for a vision encoder giving
    /// `tokens_per_image` tokens and sequences of at most `max_len` tokens.
    pub fn new(tokens_per_image: usize, max_len: usize) -> Self {
        Self {
            image_token: "<|image_pad|>".into(),
            tokens_per_image,
            max_len,
            pad_token: "<|endoftext|>".into(),
        }
    }
}

/// One encoded conversation, before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedSample {
    /// The conversation's id.
    pub id: String,
    pub input_ids: Vec<u32>,
    /// Same length as `input_ids`; [`IGNORE_INDEX`] where nothing is learned.
    pub labels: Vec<i64>,
    /// Where the image tokens are in `input_ids`, if the record has an image.
    pub image_span: Option<Range<usize>>,
    /// Whether the sequence was cut to `max_len`.
    pub truncated: bool,
}

/// Turns [`Conversation`]s into [`EncodedSample`]s with a tokenizer and a chat template.
#[derive(Debug, Clone)]
pub struct SampleEncoder {
    tokenizer: Tokenizer,
    template: ChatTemplate,
    config: EncoderConfig,
    image_id: u32,
    pad_id: u32,
    im_start_id: u32,
    im_end_id: u32,
}

impl SampleEncoder {
    /// An encoder; fails when the tokenizer lacks the ChatML, image or pad token, or when
    /// `tokens_per_image` or `max_len` is 0.
    pub fn new(
        tokenizer: Tokenizer,
        template: ChatTemplate,
        config: EncoderConfig,
    ) -> Result<Self, EncoderError> {
        if config.tokens_per_image == 0 {
            return Err(EncoderError::Config("tokens_per_image must be at least 1"));
        }
        if config.max_len == 0 {
            return Err(EncoderError::Config("max_len must be at least 1"));
        }
        Ok(Self {
            image_id: tokenizer.token_id(&config.image_token)?,
            pad_id: tokenizer.token_id(&config.pad_token)?,
            im_start_id: tokenizer.token_id(Marker::ImStart.as_str())?,
            im_end_id: tokenizer.token_id(Marker::ImEnd.as_str())?,
            tokenizer,
            template,
            config,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The id of the image placeholder token.
    pub fn image_token_id(&self) -> u32 {
        self.image_id
    }

    /// The id written into padding.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Encodes a training conversation (ending with an answer), truncated to `max_len`.
    pub fn encode(&self, conv: &Conversation) -> Result<EncodedSample, InvalidRecord> {
        check_structure(conv, Purpose::Training)?;
        let sample = self.encode_segments(conv, &self.template.segments(&conv.turns))?;
        self.truncate(sample)
    }

    /// Encodes a generation prompt (ending with the user's question, followed by
    /// `<|im_start|>assistant\n`); all labels are [`IGNORE_INDEX`] and nothing is truncated
    /// (the context limit is the generator's business).
    pub fn encode_prompt(&self, conv: &Conversation) -> Result<EncodedSample, InvalidRecord> {
        check_structure(conv, Purpose::Generation)?;
        self.encode_segments(conv, &self.template.generation_segments(&conv.turns))
    }

    fn encode_segments(
        &self,
        conv: &Conversation,
        segments: &[Segment<'_>],
    ) -> Result<EncodedSample, InvalidRecord> {
        let mut sample = EncodedSample {
            id: conv.id.clone(),
            input_ids: Vec::new(),
            labels: Vec::new(),
            image_span: None,
            truncated: false,
        };
        for segment in segments {
            let start = sample.input_ids.len();
            let ids = self.segment_ids(conv, &segment.piece)?;
            sample.input_ids.extend_from_slice(&ids);
            let label = |&id: &u32| {
                if segment.supervised {
                    i64::from(id)
                } else {
                    IGNORE_INDEX
                }
            };
            sample.labels.extend(ids.iter().map(label));
            if segment.piece == Piece::Image {
                sample.image_span = Some(start..sample.input_ids.len());
            }
        }
        Ok(sample)
    }

    /// The ids of one segment; data text must not contain special tokens.
    fn segment_ids(
        &self,
        conv: &Conversation,
        piece: &Piece<'_>,
    ) -> Result<Vec<u32>, InvalidRecord> {
        match piece {
            Piece::Marker(Marker::ImStart) => Ok(vec![self.im_start_id]),
            Piece::Marker(Marker::ImEnd) => Ok(vec![self.im_end_id]),
            Piece::Image => Ok(vec![self.image_id; self.config.tokens_per_image]),
            Piece::Text(text) => {
                let ids = self.tokenizer.encode(text).map_err(|e| {
                    InvalidRecord::new(&conv.id, SkipReason::TokenizerFailed, e.to_string())
                })?;
                match ids
                    .iter()
                    .find(|&&id| self.tokenizer.is_special(id) || id == self.image_id)
                {
                    Some(&id) => Err(self.special_in_text(conv, id)),
                    None => Ok(ids),
                }
            }
        }
    }

    fn special_in_text(&self, conv: &Conversation, id: u32) -> InvalidRecord {
        let name = self.tokenizer.inner().id_to_token(id).unwrap_or_default();
        let detail = format!("the text contains the special token {name:?} (id {id})");
        InvalidRecord::new(&conv.id, SkipReason::SpecialTokenInText, detail)
    }

    /// Cuts the sequence to `max_len`, never inside the image run.
    fn truncate(&self, mut sample: EncodedSample) -> Result<EncodedSample, InvalidRecord> {
        let max = self.config.max_len;
        if sample.input_ids.len() > max {
            if let Some(span) = sample.image_span.as_ref().filter(|s| s.end > max) {
                let detail = format!(
                    "the image tokens end at position {} but max_len is {max}",
                    span.end
                );
                return Err(InvalidRecord::new(
                    &sample.id,
                    SkipReason::ImageDoesNotFit,
                    detail,
                ));
            }
            sample.input_ids.truncate(max);
            sample.labels.truncate(max);
            sample.truncated = true;
        }
        let seq_len = sample.labels.len();
        if supervised_targets(&sample.labels, seq_len).next().is_none() {
            let detail = format!("no answer token within max_len {max}");
            return Err(InvalidRecord::new(
                &sample.id,
                SkipReason::NothingSupervised,
                detail,
            ));
        }
        Ok(sample)
    }
}
