//! From an OpenAI conversation to the model's input: the ChatML token ids (through
//! `vlm-data`'s encoder, the template the models are trained with) and the image's pixels.
//!
//! A conversation holds at most one image (the models are trained so); it goes at the start
//! of the user message it comes in, followed by a newline, whatever its place among that
//! message's parts (the LLaVA layout, as the `chat` program writes it). Text parts of one
//! message are joined with newlines. System messages must come first; without one, the
//! checkpoint's system prompt is used.

use vlm::data::{
    ChatTemplate, Conversation, EncoderConfig, Role as TurnRole, SampleEncoder, Tokenizer, Turn,
    IMAGE_PLACEHOLDER,
};
use vlm::image::{ImageProcessor, PixelValues};

use crate::api::{ChatMessage, ChatPart, Role};
use crate::error::ApiError;
use crate::image::pixels_from_url;

/// A request ready for the model.
#[derive(Debug)]
pub struct Prompt {
    /// ChatML ids ending with `<|im_start|>assistant\n`, the image's placeholder run included.
    pub ids: Vec<u32>,
    /// The image, preprocessed for the vision tower.
    pub pixels: Option<PixelValues>,
}

/// What turning requests into prompts needs to know of the model.
#[derive(Debug, Clone)]
pub struct Prompter {
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// Its image processor, with the server's decode limits.
    pub processor: ImageProcessor,
    /// The name of the image placeholder token.
    pub image_token: String,
    /// Placeholders per image.
    pub tokens_per_image: usize,
    /// The language model's vocabulary size (every prompt id must be below it).
    pub vocab_size: usize,
    /// The system prompt when a request has none.
    pub default_system: Option<String>,
    /// The longest prompt plus answer, in tokens.
    pub max_context: usize,
    /// The most bytes of message text a prompt within the context can hold: the context
    /// times [`max_token_bytes`]. Longer text is refused before tokenizing.
    pub max_text_bytes: usize,
}

/// The most UTF-8 bytes of text one token of `tokenizer` stands for: its longest vocabulary
/// entry, special tokens included. A text of `n` bytes thus takes at least `n / this` tokens,
/// which bounds the tokens of a request before tokenizing it. (Byte-level BPE vocabularies
/// write each byte as one character of one or two UTF-8 bytes, so their entries' lengths
/// over-count: a ceiling still.)
pub fn max_token_bytes(tokenizer: &Tokenizer) -> usize {
    let vocabulary = tokenizer.inner().get_vocab(true);
    vocabulary.keys().map(String::len).max().unwrap_or(1).max(1)
}

impl Prompter {
    /// The prompt of a conversation whose answer may take `max_tokens` tokens.
    pub fn prompt(&self, messages: &[ChatMessage], max_tokens: usize) -> Result<Prompt, ApiError> {
        self.check_text_size(messages)?;
        let (system, conversation) = split_system(messages)?;
        let mut image_url = None;
        let mut turns = Vec::with_capacity(conversation.len());
        for message in conversation {
            let (text, url) = flatten(message)?;
            if let Some(url) = url {
                if image_url.replace(url).is_some() {
                    return Err(ApiError::invalid(
                        Some("messages"),
                        "a conversation may hold one image only",
                    ));
                }
            }
            turns.push(text);
        }
        let pixels = match image_url {
            Some(url) => Some(pixels_from_url(url, &self.processor)?),
            None => None,
        };
        let ids = self.encode(system, turns, pixels.is_some())?;
        if ids.len() + max_tokens > self.max_context {
            return Err(ApiError::invalid_code(
                Some("messages"),
                "context_length_exceeded",
                format!(
                    "the prompt takes {} tokens and max_tokens is {max_tokens}: over this \
                     server's context of {} tokens",
                    ids.len(),
                    self.max_context
                ),
            ));
        }
        Ok(Prompt { ids, pixels })
    }

    /// Refuses text too long for the context whatever its tokens, before the cost of
    /// tokenizing it.
    fn check_text_size(&self, messages: &[ChatMessage]) -> Result<(), ApiError> {
        let bytes: usize = messages
            .iter()
            .flat_map(|message| &message.parts)
            .map(|part| match part {
                ChatPart::Text(text) => text.len(),
                ChatPart::Image(_) => 0,
            })
            .sum();
        if bytes <= self.max_text_bytes {
            return Ok(());
        }
        Err(ApiError::invalid_code(
            Some("messages"),
            "context_length_exceeded",
            format!(
                "the messages hold {bytes} bytes of text, more than fits in this server's \
                 context of {} tokens (at most {} bytes)",
                self.max_context, self.max_text_bytes
            ),
        ))
    }

    /// The ChatML ids of the turns, checked against the vocabulary.
    fn encode(
        &self,
        system: Option<String>,
        turns: Vec<Turn>,
        has_image: bool,
    ) -> Result<Vec<u32>, ApiError> {
        let template = match system.or_else(|| self.default_system.clone()) {
            Some(system) => ChatTemplate::new(system),
            None => ChatTemplate::without_system(),
        };
        let mut config = EncoderConfig::new(self.tokens_per_image, usize::MAX);
        config.image_token = self.image_token.clone();
        let encoder = SampleEncoder::new(self.tokenizer.clone(), template, config)
            .map_err(|err| ApiError::invalid(None, err.to_string()))?;
        let conversation = Conversation {
            id: "request".into(),
            image: has_image.then(|| "image_url".into()),
            turns,
        };
        let ids = encoder
            .encode_prompt(&conversation)
            .map_err(|err| ApiError::invalid(Some("messages"), err.to_string()))?
            .input_ids;
        match ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            Some(id) => Err(ApiError::invalid(
                Some("messages"),
                format!(
                    "the text holds token {id}, outside the model's vocabulary of {}",
                    self.vocab_size
                ),
            )),
            None => Ok(ids),
        }
    }
}

/// The system prompt (system messages before the first other one, joined) and the rest.
fn split_system(messages: &[ChatMessage]) -> Result<(Option<String>, &[ChatMessage]), ApiError> {
    let first_other = messages
        .iter()
        .position(|m| m.role != Role::System)
        .unwrap_or(messages.len());
    let (system, rest) = messages.split_at(first_other);
    if rest.iter().any(|m| m.role == Role::System) {
        return Err(ApiError::invalid(
            Some("messages"),
            "system messages must come before the conversation",
        ));
    }
    if system.is_empty() {
        return Ok((None, rest));
    }
    let texts = system
        .iter()
        .map(|m| flatten(m).and_then(|(turn, url)| text_only(turn.text, url)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Some(texts.join("\n\n")), rest))
}

fn text_only(text: String, url: Option<&str>) -> Result<String, ApiError> {
    match url {
        Some(_) => Err(image_outside_user()),
        None => Ok(text),
    }
}

fn image_outside_user() -> ApiError {
    ApiError::invalid(Some("messages"), "only user messages may hold an image")
}

/// A message as one turn (its text parts joined, the image placeholder first) and its image URL.
fn flatten(message: &ChatMessage) -> Result<(Turn, Option<&str>), ApiError> {
    let mut texts = Vec::new();
    let mut url = None;
    for part in &message.parts {
        match part {
            ChatPart::Text(text) => texts.push(text.as_str()),
            ChatPart::Image(_) if url.is_some() => {
                return Err(ApiError::invalid(
                    Some("messages"),
                    "a conversation may hold one image only",
                ))
            }
            ChatPart::Image(image) => url = Some(image.as_str()),
        }
    }
    let role = match message.role {
        Role::Assistant if url.is_some() => return Err(image_outside_user()),
        Role::Assistant => TurnRole::Assistant,
        Role::User | Role::System => TurnRole::User,
    };
    let text = texts.join("\n");
    let text = match url {
        Some(_) => format!("{IMAGE_PLACEHOLDER}\n{text}"),
        None => text,
    };
    Ok((Turn { role, text }, url))
}
