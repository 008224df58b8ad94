//! The record every data source produces and the encoder consumes: one conversation about at
//! most one image.
//!
//! Source parsers (LLaVA-Instruct, AI Challenger captions, ...) turn their formats into
//! [`Conversation`]s; a manifest is a JSONL file with one serialized `Conversation` per line,
//! e.g.
//!
//! ```json
//! {"id":"000001","image":"coco/000001.jpg","turns":[{"role":"user","text":"<image>\nWhat is this?"},{"role":"assistant","text":"A cat."}]}
//! ```
//!
//! The image's place in the text is the literal [`IMAGE_PLACEHOLDER`] (`<image>`, the LLaVA
//! convention) inside a user turn; the encoder expands it into the vision tokens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Marks where the image goes in a user turn's text (LLaVA convention).
pub const IMAGE_PLACEHOLDER: &str = "<image>";

/// One training or evaluation record: an optional image and the turns about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Identifies the record in logs and skip reports (the source's id, or a line number).
    pub id: String,
    /// The image file, relative to the dataset's image root or absolute; `None` for text only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<PathBuf>,
    /// The turns in order; a valid training record starts with a user turn and alternates.
    pub turns: Vec<Turn>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Who speaks.
    pub role: Role,
    /// What is said; a user turn may hold [`IMAGE_PLACEHOLDER`].
    pub text: String,
}

/// The speaker of a [`Turn`]; serialized as `"user"` / `"assistant"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The human asking (its text is never supervised).
    User,
    /// The model answering (its text is what training learns).
    Assistant,
}

impl Turn {
    /// A user turn.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            text: text.into(),
        }
    }

    /// An assistant turn.
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            text: text.into(),
        }
    }
}

impl Conversation {
    /// How many times [`IMAGE_PLACEHOLDER`] occurs over all turns.
    pub fn placeholder_count(&self) -> usize {
        self.turns
            .iter()
            .map(|t| t.text.matches(IMAGE_PLACEHOLDER).count())
            .sum()
    }
}
