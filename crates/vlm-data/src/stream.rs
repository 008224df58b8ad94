//! Printing generated text token by token without broken characters.
//!
//! A byte-level BPE token can end in the middle of a UTF-8 character (Chinese characters take
//! three bytes, emoji four, and Qwen splits rare ones across tokens). Decoding each token on its
//! own would print U+FFFD for those halves; [`TextStreamer`] holds such bytes back until the
//! character is complete.

use crate::{Tokenizer, TokenizerError};

/// Turns a stream of token ids into chunks of valid text.
///
/// It keeps the ids whose text is not yet printed plus the ids of the last printed chunk (as
/// left context, so decoders that depend on the previous token stay correct), decodes them
/// after each new id and yields the new text only when it does not end in U+FFFD, the mark of
/// an incomplete character. The same scheme as `tokenizers`' `DecodeStream`, with
/// [`finish`](Self::finish) to flush what is left at the end of generation.
#[derive(Debug)]
pub struct TextStreamer<'t> {
    tokenizer: &'t Tokenizer,
    skip_special_tokens: bool,
    /// Context ids (already printed) followed by ids not printed yet.
    ids: Vec<u32>,
    /// How many leading ids of `ids` are context.
    printed: usize,
    /// The text of the context ids.
    printed_text: String,
}

impl<'t> TextStreamer<'t> {
    /// A streamer over `tokenizer`; special tokens (`<|im_end|>`) are left out of the text when
    /// `skip_special_tokens` is set.
    pub fn new(tokenizer: &'t Tokenizer, skip_special_tokens: bool) -> Self {
        Self {
            tokenizer,
            skip_special_tokens,
            ids: Vec::new(),
            printed: 0,
            printed_text: String::new(),
        }
    }

    /// Adds one generated id; returns the text that became complete with it, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let text = self.decode()?;
        if text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let Some(new) = text.strip_prefix(self.printed_text.as_str()) else {
            // The decoder rewrote the context (not the case for byte-level BPE): wait for more.
            return Ok(None);
        };
        if new.is_empty() {
            return Ok(None);
        }
        let new = new.to_owned();
        self.ids.drain(..self.printed);
        self.printed = self.ids.len();
        self.printed_text = self.decode()?;
        Ok(Some(new))
    }

    /// Ends the stream: the text held back, with U+FFFD for bytes that never formed a character
    /// (`None` when nothing is pending). The streamer is empty afterwards.
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        let text = self.decode()?;
        let rest = text
            .strip_prefix(self.printed_text.as_str())
            .unwrap_or(&text)
            .to_owned();
        self.ids.clear();
        self.printed = 0;
        self.printed_text.clear();
        Ok((!rest.is_empty()).then_some(rest))
    }

    fn decode(&self) -> Result<String, TokenizerError> {
        self.tokenizer.decode(&self.ids, self.skip_special_tokens)
    }
}
