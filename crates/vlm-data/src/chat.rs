//! The ChatML chat template of Qwen models.
//!
//! ```text
//! <|im_start|>system\n{system}<|im_end|>\n
//! <|im_start|>user\n{question}<|im_end|>\n
//! <|im_start|>assistant\n{answer}<|im_end|>\n
//! ...
//! ```
//!
//! The template is produced as a list of [`Segment`]s rather than one string, so the encoder can
//! tokenise each piece on its own and know exactly which tokens are the answers (see
//! [`SampleEncoder`](crate::SampleEncoder)); [`ChatTemplate::render`] concatenates the same
//! segments, so the text and the token ids always agree.

use std::borrow::Cow;

use crate::{Role, Turn, IMAGE_PLACEHOLDER};

/// The system prompt of this project's seed model.
pub const SEED_SYSTEM_PROMPT: &str = "你是一位图像理解助手。";
/// The default system prompt of Qwen-7B-Chat, Qwen2-Instruct and Qwen2.5-VL.
pub const HELPFUL_ASSISTANT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";
/// The default system prompt of the Qwen2.5 (text) Instruct chat template.
pub const QWEN25_SYSTEM_PROMPT: &str =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// A ChatML special token the template writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// `<|im_start|>`: opens a message.
    ImStart,
    /// `<|im_end|>`: closes a message (and ends an assistant answer).
    ImEnd,
}

impl Marker {
    /// The token as written in text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImStart => "<|im_start|>",
            Self::ImEnd => "<|im_end|>",
        }
    }
}

/// What a segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    /// A special token of the template (one id).
    Marker(Marker),
    /// Plain text: a role name, the system prompt, or message content.
    Text(Cow<'a, str>),
    /// Where the image goes (`<image>` in the conversation).
    Image,
}

/// One piece of the rendered conversation and whether training learns to produce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment<'a> {
    /// What the segment holds.
    pub piece: Piece<'a>,
    /// True for assistant answers and the `<|im_end|>` that closes them.
    pub supervised: bool,
}

/// Appends a segment, merging it into the previous one when both are text with the same
/// supervision: the tokenizer then sees `user\nWhat is this?` whole, as Hugging Face would, and
/// splits only where it must (markers, the image, prompt / answer boundaries).
fn push<'a>(out: &mut Vec<Segment<'a>>, piece: Piece<'a>, supervised: bool) {
    if let (Piece::Text(new), Some(last)) = (&piece, out.last_mut()) {
        if let Piece::Text(prev) = &mut last.piece {
            if last.supervised == supervised {
                prev.to_mut().push_str(new);
                return;
            }
        }
    }
    out.push(Segment { piece, supervised });
}

/// The ChatML template with a configurable system prompt.
///
/// Supervision: an assistant message's content and its closing `<|im_end|>` are the targets
/// (the model must learn to stop); the `<|im_start|>assistant\n` header before it and the `\n`
/// after `<|im_end|>` are not: the header is always given at inference and generation stops at
/// `<|im_end|>`, so the `\n` is never produced by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    system: Option<String>,
}

impl Default for ChatTemplate {
    /// The seed model's template ([`SEED_SYSTEM_PROMPT`]).
    fn default() -> Self {
        Self::new(SEED_SYSTEM_PROMPT)
    }
}

impl ChatTemplate {
    /// A template opening every conversation with `system` as the system message.
    pub fn new(system: impl Into<String>) -> Self {
        Self {
            system: Some(system.into()),
        }
    }

    /// A template without a system message.
    pub fn without_system() -> Self {
        Self { system: None }
    }

    /// The system prompt, if any.
    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// The segments of a whole conversation (for training): every message closed by
    /// `<|im_end|>\n`, assistant contents and their `<|im_end|>` supervised.
    pub fn segments<'a>(&'a self, turns: &'a [Turn]) -> Vec<Segment<'a>> {
        let mut out = self.system_segments();
        for turn in turns {
            push_turn(&mut out, turn);
        }
        out
    }

    /// The segments of a generation prompt: the conversation followed by
    /// `<|im_start|>assistant\n`, nothing supervised.
    pub fn generation_segments<'a>(&'a self, turns: &'a [Turn]) -> Vec<Segment<'a>> {
        let mut out = self.segments(turns);
        out.iter_mut().for_each(|s| s.supervised = false);
        push_header(&mut out, Role::Assistant);
        out
    }

    /// The conversation as ChatML text (the image shown as `<image>`).
    pub fn render(&self, turns: &[Turn]) -> String {
        render_segments(&self.segments(turns))
    }

    /// The generation prompt as ChatML text, ending with `<|im_start|>assistant\n`.
    pub fn render_generation_prompt(&self, turns: &[Turn]) -> String {
        render_segments(&self.generation_segments(turns))
    }

    fn system_segments(&self) -> Vec<Segment<'_>> {
        let mut out = Vec::new();
        if let Some(system) = &self.system {
            push(&mut out, Piece::Marker(Marker::ImStart), false);
            push(
                &mut out,
                Piece::Text(Cow::Owned(format!("system\n{system}"))),
                false,
            );
            push_footer(&mut out, false);
        }
        out
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    }
}

/// `<|im_start|>{role}\n`.
fn push_header(out: &mut Vec<Segment<'_>>, role: Role) {
    push(out, Piece::Marker(Marker::ImStart), false);
    let header = format!("{}\n", role_name(role));
    push(out, Piece::Text(Cow::Owned(header)), false);
}

/// `<|im_end|>` (supervised after an answer) then an unsupervised `\n`.
fn push_footer(out: &mut Vec<Segment<'_>>, answer: bool) {
    push(out, Piece::Marker(Marker::ImEnd), answer);
    push(out, Piece::Text(Cow::Borrowed("\n")), false);
}

fn push_turn<'a>(out: &mut Vec<Segment<'a>>, turn: &'a Turn) {
    push_header(out, turn.role);
    match turn.role {
        Role::User => push_user_text(out, &turn.text),
        Role::Assistant => push(out, Piece::Text(Cow::Borrowed(&turn.text)), true),
    }
    push_footer(out, turn.role == Role::Assistant);
}

/// User text with each `<image>` as a [`Piece::Image`] (empty text pieces dropped).
fn push_user_text<'a>(out: &mut Vec<Segment<'a>>, text: &'a str) {
    for (i, part) in text.split(IMAGE_PLACEHOLDER).enumerate() {
        if i > 0 {
            push(out, Piece::Image, false);
        }
        if !part.is_empty() {
            push(out, Piece::Text(Cow::Borrowed(part)), false);
        }
    }
}

fn render_segments(segments: &[Segment<'_>]) -> String {
    segments
        .iter()
        .map(|s| match &s.piece {
            Piece::Marker(m) => m.as_str(),
            Piece::Text(t) => t,
            Piece::Image => IMAGE_PLACEHOLDER,
        })
        .collect()
}
