//! The JSON of OpenAI's chat completions API that this server reads, checked into a
//! [`ChatRequest`]: every missing field, wrong type or out-of-range value is an
//! [`ApiError`] naming the field.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ApiError;

/// A `POST /v1/chat/completions` body as OpenAI clients send it. Of the fields this server does
/// not implement, only those in [`IGNORED_FIELDS`] are accepted; any other (`logprobs`, `tools`,
/// `response_format`, ...) is refused unless it holds its no-op value (see [`is_no_op`]).
#[derive(Debug, Deserialize)]
pub struct RawRequest {
    /// The conversation so far, ending with the user's message.
    pub messages: Vec<Message>,
    /// Most tokens to generate (older name).
    pub max_tokens: Option<u64>,
    /// Most tokens to generate (newer name; wins over `max_tokens`).
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature in [0, 2]; 0 is greedy decoding. OpenAI's default is 1.
    pub temperature: Option<f32>,
    /// Nucleus sampling mass in [0, 1].
    pub top_p: Option<f32>,
    /// Up to 4 strings that end the answer (not included in it).
    pub stop: Option<Stop>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options (`include_usage`).
    pub stream_options: Option<StreamOptions>,
    /// Seed of the sampler: equal seeds give equal answers.
    pub seed: Option<u64>,
    /// How many answers; only 1 is supported.
    pub n: Option<u64>,
    /// The model asked for: the served id or one of its aliases (none: the served model).
    pub model: Option<String>,
    /// Every other field, checked by [`refuse_unsupported`].
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Fields that do not change the answer, accepted and ignored as OpenAI documents them
/// (bookkeeping for the caller).
pub const IGNORED_FIELDS: [&str; 4] = ["user", "metadata", "store", "service_tier"];

/// `stream_options`.
#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the token counts.
    #[serde(default)]
    pub include_usage: bool,
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// One message of `messages`.
#[derive(Debug, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// A string, or a list of parts (`null` only where OpenAI allows it, refused here).
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// `{"type": "text", "text": ...}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "image_url", "image_url": {"url": ...}}`.
    ImageUrl {
        /// Where the image is: a `data:` URL here.
        image_url: ImageUrl,
    },
}

/// `image_url`.
#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    /// `data:image/png;base64,...` (http(s) URLs are refused: the server does not fetch).
    pub url: String,
}

/// Who speaks a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `system` or `developer`: instructions before the conversation.
    System,
    /// The person asking.
    User,
    /// The model's earlier answers.
    Assistant,
}

/// A message with its role checked and its parts in order.
#[derive(Debug)]
pub struct ChatMessage {
    /// Who speaks.
    pub role: Role,
    /// The text parts and image URLs, in order.
    pub parts: Vec<ChatPart>,
}

/// A checked part.
#[derive(Debug)]
pub enum ChatPart {
    /// Text.
    Text(String),
    /// An image URL, not yet decoded.
    Image(String),
}

/// How to choose tokens, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// 0 for greedy decoding.
    pub temperature: f32,
    /// Nucleus mass; `None` for all tokens.
    pub top_p: Option<f32>,
    /// Strings that end the answer.
    pub stop: Vec<String>,
    /// The sampler's seed.
    pub seed: u64,
}

/// A checked request.
#[derive(Debug)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// The sampling settings.
    pub sampling: Sampling,
    /// Answer with server-sent events.
    pub stream: bool,
    /// With `stream`, end with a chunk carrying the token counts.
    pub include_usage: bool,
    /// The model asked for, if any.
    pub model: Option<String>,
}

/// What the server allows.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// `max_tokens` when the request gives none.
    pub default_max_tokens: usize,
    /// The largest `max_tokens` accepted.
    pub max_tokens: usize,
}

/// Most stop strings, as OpenAI allows.
const MAX_STOPS: usize = 4;

impl ChatRequest {
    /// Parses and checks a request body.
    pub fn parse(body: &[u8], limits: RequestLimits) -> Result<Self, ApiError> {
        let raw: RawRequest = serde_json::from_slice(body).map_err(|err| {
            ApiError::invalid(None, format!("the body is not a valid request: {err}"))
        })?;
        refuse_unsupported(&raw.other)?;
        let sampling = sampling(&raw, limits)?;
        if raw.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(Some("n"), "only n = 1 is supported"));
        }
        if raw.messages.is_empty() {
            return Err(ApiError::invalid(Some("messages"), "messages is empty"));
        }
        let messages = raw
            .messages
            .into_iter()
            .map(ChatMessage::check)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            messages,
            sampling,
            stream: raw.stream,
            include_usage: raw.stream_options.is_some_and(|o| o.include_usage),
            model: raw.model,
        })
    }
}

/// Refuses the first field this server does not implement, naming it (fields are checked in
/// name order, so the answer does not depend on the body's key order).
fn refuse_unsupported(other: &Map<String, Value>) -> Result<(), ApiError> {
    let mut fields: Vec<_> = other
        .iter()
        .filter(|(name, value)| !IGNORED_FIELDS.contains(&name.as_str()) && !is_no_op(value))
        .map(|(name, _)| name.as_str())
        .collect();
    fields.sort_unstable();
    match fields.first() {
        Some(field) => Err(ApiError::unsupported(field)),
        None => Ok(()),
    }
}

/// Whether a value of an unimplemented field asks for nothing (`null`, `false`, `0`, `[]`,
/// `{}`): `"logprobs": false` or `"tools": []` are honoured by ignoring them.
fn is_no_op(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(on) => !on,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        Value::String(_) => false,
    }
}

impl ChatMessage {
    fn check(message: Message) -> Result<Self, ApiError> {
        let role = match message.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    format!("unsupported role {other:?}: use system, user or assistant"),
                ))
            }
        };
        let parts = match message.content {
            None => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    "a message has no content",
                ))
            }
            Some(Content::Text(text)) => vec![ChatPart::Text(text)],
            Some(Content::Parts(parts)) => parts
                .into_iter()
                .map(|part| match part {
                    Part::Text { text } => ChatPart::Text(text),
                    Part::ImageUrl { image_url } => ChatPart::Image(image_url.url),
                })
                .collect(),
        };
        Ok(Self { role, parts })
    }
}

fn sampling(raw: &RawRequest, limits: RequestLimits) -> Result<Sampling, ApiError> {
    let max_tokens = match raw.max_completion_tokens.or(raw.max_tokens) {
        None => limits.default_max_tokens,
        Some(n) if n >= 1 && n <= limits.max_tokens as u64 => n as usize,
        Some(n) => {
            return Err(ApiError::invalid(
                Some("max_tokens"),
                format!(
                    "max_tokens is {n}; this server allows 1 to {}",
                    limits.max_tokens
                ),
            ))
        }
    };
    let temperature = raw.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            Some("temperature"),
            format!("temperature is {temperature}; it must be in [0, 2]"),
        ));
    }
    let top_p = match raw.top_p {
        Some(p) if !(0.0..=1.0).contains(&p) => {
            return Err(ApiError::invalid(
                Some("top_p"),
                format!("top_p is {p}; it must be in [0, 1]"),
            ))
        }
        Some(p) if p < 1.0 => Some(p),
        _ => None,
    };
    Ok(Sampling {
        max_tokens,
        // top_p = 0 keeps only the most likely token: greedy.
        temperature: if top_p == Some(0.0) { 0.0 } else { temperature },
        top_p: top_p.filter(|&p| p > 0.0),
        stop: stop_strings(raw.stop.as_ref())?,
        seed: raw.seed.unwrap_or_else(fresh_seed),
    })
}

fn stop_strings(stop: Option<&Stop>) -> Result<Vec<String>, ApiError> {
    let stops = match stop {
        None => Vec::new(),
        Some(Stop::One(one)) => vec![one.clone()],
        Some(Stop::Many(many)) => many.clone(),
    };
    if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            Some("stop"),
            format!("stop takes at most {MAX_STOPS} non-empty strings"),
        ));
    }
    Ok(stops)
}

/// A seed for a request that gives none: the clock's nanoseconds.
fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
