//! Why a record is left out of training, and how many were.
//!
//! Real datasets hold broken records. Each one is rejected with a [`SkipReason`] before it can
//! produce a wrong label mask or a wrong number of image tokens; the loader counts them
//! ([`SkipCounts`]) or, in strict mode, stops with an error.

use std::collections::BTreeMap;
use std::fmt;

use crate::{Conversation, Role, IMAGE_PLACEHOLDER};

/// The kind of defect that makes a record unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The manifest line is not a JSON [`Conversation`].
    MalformedRecord,
    /// No turns at all.
    EmptyConversation,
    /// The first turn is not the user's.
    FirstTurnNotUser,
    /// Two consecutive turns have the same role.
    RolesNotAlternating,
    /// A training record must end with an answer (an unanswered question teaches nothing).
    LastTurnNotAssistant,
    /// A generation prompt must end with the user's question.
    LastTurnNotUser,
    /// An assistant turn with no text (or only whitespace).
    EmptyAssistantTurn,
    /// The record has an image but no `<image>` in its text.
    MissingImagePlaceholder,
    /// `<image>` occurs more than once (a record has at most one image).
    MultipleImagePlaceholders,
    /// `<image>` occurs but the record has no image.
    PlaceholderWithoutImage,
    /// `<image>` occurs in an assistant turn.
    PlaceholderOutsideUserTurn,
    /// The text itself contains a special token (`<|im_end|>`, `<|image_pad|>`, ...), which
    /// would corrupt the template or the image run.
    SpecialTokenInText,
    /// The image tokens do not fit in the maximum sequence length (they are never cut).
    ImageDoesNotFit,
    /// After truncation to the maximum length no supervised token is left.
    NothingSupervised,
    /// The image file could not be read or decoded.
    ImageUnreadable,
    /// The tokenizer rejected the text.
    TokenizerFailed,
}

impl SkipReason {
    /// Every reason, in declaration order.
    pub const ALL: [Self; 16] = [
        Self::MalformedRecord,
        Self::EmptyConversation,
        Self::FirstTurnNotUser,
        Self::RolesNotAlternating,
        Self::LastTurnNotAssistant,
        Self::LastTurnNotUser,
        Self::EmptyAssistantTurn,
        Self::MissingImagePlaceholder,
        Self::MultipleImagePlaceholders,
        Self::PlaceholderWithoutImage,
        Self::PlaceholderOutsideUserTurn,
        Self::SpecialTokenInText,
        Self::ImageDoesNotFit,
        Self::NothingSupervised,
        Self::ImageUnreadable,
        Self::TokenizerFailed,
    ];

    /// A short snake_case name for logs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedRecord => "malformed_record",
            Self::EmptyConversation => "empty_conversation",
            Self::FirstTurnNotUser => "first_turn_not_user",
            Self::RolesNotAlternating => "roles_not_alternating",
            Self::LastTurnNotAssistant => "last_turn_not_assistant",
            Self::LastTurnNotUser => "last_turn_not_user",
            Self::EmptyAssistantTurn => "empty_assistant_turn",
            Self::MissingImagePlaceholder => "missing_image_placeholder",
            Self::MultipleImagePlaceholders => "multiple_image_placeholders",
            Self::PlaceholderWithoutImage => "placeholder_without_image",
            Self::PlaceholderOutsideUserTurn => "placeholder_outside_user_turn",
            Self::SpecialTokenInText => "special_token_in_text",
            Self::ImageDoesNotFit => "image_does_not_fit",
            Self::NothingSupervised => "nothing_supervised",
            Self::ImageUnreadable => "image_unreadable",
            Self::TokenizerFailed => "tokenizer_failed",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record: the reason and a human-readable detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {id:?} rejected ({reason}): {detail}")]
pub struct InvalidRecord {
    /// The record's id (`line N` when it could not even be parsed).
    pub id: String,
    pub reason: SkipReason,
    pub detail: String,
}

impl InvalidRecord {
    /// A rejection of record `id`.
    pub fn new(id: impl Into<String>, reason: SkipReason, detail: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            reason,
            detail: detail.into(),
        }
    }
}

/// How many records were skipped, per reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipCounts {
    counts: BTreeMap<SkipReason, usize>,
}

impl SkipCounts {
    /// Counts one more record skipped for `reason`.
    pub fn add(&mut self, reason: SkipReason) {
        *self.counts.entry(reason).or_default() += 1;
    }

    /// Records skipped for `reason`.
    pub fn get(&self, reason: SkipReason) -> usize {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// Records skipped for any reason.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// The non-zero counts, in [`SkipReason`] order.
    pub fn iter(&self) -> impl Iterator<Item = (SkipReason, usize)> + '_ {
        self.counts.iter().map(|(r, n)| (*r, *n))
    }
}

impl fmt::Display for SkipCounts {
    /// `none`, or `reason: n, reason: n`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.counts.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.iter().map(|(r, n)| format!("{r}: {n}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// What a conversation is about to be encoded for; decides how it must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A training sample: ends with an assistant answer.
    Training,
    /// A generation prompt: ends with the user's question.
    Generation,
}

/// Checks the structure of a conversation (turn order, empty answers, placeholders) before
/// anything is tokenised.
pub(crate) fn check_structure(conv: &Conversation, purpose: Purpose) -> Result<(), InvalidRecord> {
    let reject = |reason, detail: String| Err(InvalidRecord::new(&conv.id, reason, detail));
    let Some(first) = conv.turns.first() else {
        return reject(SkipReason::EmptyConversation, "no turns".into());
    };
    if first.role != Role::User {
        return reject(
            SkipReason::FirstTurnNotUser,
            "the first turn is the assistant's".into(),
        );
    }
    if let Some(i) = conv.turns.windows(2).position(|w| w[0].role == w[1].role) {
        let detail = format!("turns {i} and {} are both {:?}", i + 1, conv.turns[i].role);
        return reject(SkipReason::RolesNotAlternating, detail);
    }
    let last = conv.turns.len() - 1;
    match (purpose, conv.turns[last].role) {
        (Purpose::Training, Role::User) => {
            return reject(
                SkipReason::LastTurnNotAssistant,
                format!("turn {last} is unanswered"),
            );
        }
        (Purpose::Generation, Role::Assistant) => {
            return reject(
                SkipReason::LastTurnNotUser,
                format!("turn {last} is an answer"),
            );
        }
        _ => {}
    }
    let empty = conv
        .turns
        .iter()
        .position(|t| t.role == Role::Assistant && t.text.trim().is_empty());
    if let Some(i) = empty {
        return reject(
            SkipReason::EmptyAssistantTurn,
            format!("assistant turn {i} is empty"),
        );
    }
    check_placeholders(conv)
}

/// At most one `<image>`, in a user turn, present exactly when the record has an image.
fn check_placeholders(conv: &Conversation) -> Result<(), InvalidRecord> {
    let reject = |reason, detail: String| Err(InvalidRecord::new(&conv.id, reason, detail));
    let in_answer = conv
        .turns
        .iter()
        .position(|t| t.role == Role::Assistant && t.text.contains(IMAGE_PLACEHOLDER));
    if let Some(i) = in_answer {
        let detail = format!("assistant turn {i} contains {IMAGE_PLACEHOLDER}");
        return reject(SkipReason::PlaceholderOutsideUserTurn, detail);
    }
    match (conv.placeholder_count(), &conv.image) {
        (0, Some(image)) => {
            let detail = format!(
                "image {} but no {IMAGE_PLACEHOLDER} in the text",
                image.display()
            );
            reject(SkipReason::MissingImagePlaceholder, detail)
        }
        (n, _) if n > 1 => {
            let detail = format!("{n} x {IMAGE_PLACEHOLDER}, at most one image per record");
            reject(SkipReason::MultipleImagePlaceholders, detail)
        }
        (1, None) => {
            let detail = format!("{IMAGE_PLACEHOLDER} in the text but no image");
            reject(SkipReason::PlaceholderWithoutImage, detail)
        }
        _ => Ok(()),
    }
}
