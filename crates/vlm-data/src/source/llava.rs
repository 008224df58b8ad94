//! LLaVA-Instruct annotations (`detail_23k.json`, `complex_reasoning_77k.json`,
//! `conversation_58k.json`, `llava_instruct_150k.json`, and other files of that format):
//!
//! ```json
//! [{"id": "000000033471", "image": "000000033471.jpg",
//!   "conversations": [{"from": "human", "value": "<image>\nWhat are the colors of the bus?"},
//!                     {"from": "gpt", "value": "The bus is white and red."}, ...]}, ...]
//! ```
//!
//! Every record gives one sample with all its turns, even when several records share an image.
//! `image` is relative to the source's image folder (and must stay inside it); a record without it is text only. The
//! `<image>` placeholder stays where the record has it (start or end of the first human turn,
//! with its newline). `id` may be a string or a number.

use serde::Deserialize;
use serde_json::Value;

use crate::conversation::{Conversation, Role, Turn};

use super::images::ImageRoot;
use super::validate::validate;
use super::{Parsed, Skip, SkipReason};

#[derive(Deserialize)]
struct Record {
    id: Value,
    #[serde(default)]
    image: Option<String>,
    conversations: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    from: String,
    value: String,
}

/// Turns one array element into a sample, or says why it is skipped.
pub(crate) fn parse(value: Value, images: &ImageRoot) -> Parsed {
    match conversation(value, images) {
        Ok(c) => Parsed::one(c),
        Err(skip) => Parsed::Skip(skip),
    }
}

fn conversation(value: Value, images: &ImageRoot) -> Result<Conversation, Skip> {
    let record: Record = serde_json::from_value(value)
        .map_err(|e| Skip::new(SkipReason::Malformed, e.to_string()))?;
    let id = id_text(record.id)?;
    let image = match record.image {
        Some(name) if name.trim().is_empty() => {
            return Err(Skip::new(SkipReason::Malformed, "empty `image` field"));
        }
        Some(name) => Some(images.resolve(&name)?),
        None => None,
    };
    let turns = record
        .conversations
        .into_iter()
        .enumerate()
        .map(|(i, m)| turn(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    let c = Conversation { id, image, turns };
    validate(&c)?;
    Ok(c)
}

fn id_text(id: Value) -> Result<String, Skip> {
    match id {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(Skip::new(
            SkipReason::Malformed,
            format!("`id` must be a string or a number, found {other}"),
        )),
    }
}

fn turn(index: usize, message: Message) -> Result<Turn, Skip> {
    let role = match message.from.as_str() {
        "human" | "user" => Role::User,
        "gpt" | "assistant" => Role::Assistant,
        other => {
            return Err(Skip::new(
                SkipReason::UnknownRole,
                format!("turn {index} is from {other:?} (expected \"human\" or \"gpt\")"),
            ));
        }
    };
    Ok(Turn {
        role,
        text: message.value,
    })
}
