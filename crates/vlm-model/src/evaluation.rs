//! Question-answer evaluation, shared by the `eval`, `quickstart` and `custom_encoder`
//! programs: every assistant turn of a conversation is a question (the conversation before it
//! the prompt, earlier reference answers included), answered greedily in left-padded batches
//! and graded against its reference.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use vlm_data::{Conversation, Role, Tokenizer, TokenizerError, IMAGE_PLACEHOLDER};
use vlm_image::PixelValues;
use vlm_qwen::GenerationConfig;
use vlm_vision::VisionEncoder;

use crate::{LanguageModel, ModelError, Projector, VisionLanguageModel, VlmBatch};

/// Why answering questions failed.
#[derive(Debug, thiserror::Error)]
pub enum EvaluationError {
    /// Generation failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Decoding an answer failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The images of one batch must share one shape.
    #[error("image shape {found:?} differs from {expected:?} earlier in the batch")]
    ImageShape {
        /// The first image's `[channels, height, width]`.
        expected: [usize; 3],
        /// The differing image's.
        found: [usize; 3],
    },
}

/// One question of a conversation and its reference answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// `{conversation id}#{exchange index}`.
    pub id: String,
    /// The conversation up to and including the question.
    pub prompt: Conversation,
    /// The reference answer: the assistant turn's text.
    pub reference: String,
}

impl Question {
    /// One question per assistant turn of `conversation` (a leading assistant turn has no
    /// question and is left out), in turn order.
    pub fn all_of(conversation: &Conversation) -> impl Iterator<Item = Question> + '_ {
        conversation
            .turns
            .iter()
            .enumerate()
            .filter(|(index, turn)| turn.role == Role::Assistant && *index > 0)
            .map(|(index, turn)| Question {
                id: format!("{}#{}", conversation.id, index / 2),
                prompt: Conversation {
                    turns: conversation.turns[..index].to_vec(),
                    ..conversation.clone()
                },
                reference: turn.text.clone(),
            })
    }

    /// What is asked: the prompt's last turn without its image placeholder, trimmed.
    pub fn text(&self) -> String {
        let asked = self
            .prompt
            .turns
            .last()
            .map_or("", |turn| turn.text.as_str());
        asked.replace(IMAGE_PLACEHOLDER, "").trim().to_string()
    }

    /// How `answer` compares with the reference.
    pub fn grade(&self, answer: &str) -> Grade {
        let (reference, answer) = (normalize(&self.reference), normalize(answer));
        Grade {
            exact: answer == reference,
            contains: !reference.is_empty() && answer.contains(&reference),
        }
    }
}

/// How an answer compares with its reference, both [`normalize`]d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grade {
    /// The answer is the reference.
    pub exact: bool,
    /// The answer contains the (non-empty) reference.
    pub contains: bool,
}

/// Trimmed, lower case, whitespace collapsed, a final `.`, `!` or `。` dropped: the form in
/// which answers and references are compared.
pub fn normalize(text: &str) -> String {
    let text = text.trim().trim_end_matches(['.', '!', '。', '！']);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// A question ready for the model: its prompt ids (ending with the assistant header) and the
/// preprocessed pixels of its image, if it shows one.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// The prompt in the model's token ids, image placeholders expanded.
    pub ids: Vec<u32>,
    /// The image's pixels, `None` for a text-only question.
    pub pixels: Option<PixelValues>,
}

/// A model with what answering questions needs: the tokenizer its replies decode with and
/// the generation settings (greedy, with the stop and pad ids of its template).
pub struct Answerer<'m, B: Backend, E, P, L> {
    model: &'m VisionLanguageModel<B, E, P, L>,
    tokenizer: &'m Tokenizer,
    config: GenerationConfig,
    device: B::Device,
}

impl<'m, B, E, P, L> Answerer<'m, B, E, P, L>
where
    B: Backend,
    E: VisionEncoder<B>,
    P: Projector<B>,
    L: LanguageModel<B>,
{
    /// An answerer generating with `config` and decoding with `tokenizer`.
    pub fn new(
        model: &'m VisionLanguageModel<B, E, P, L>,
        tokenizer: &'m Tokenizer,
        config: GenerationConfig,
        device: B::Device,
    ) -> Self {
        Self {
            model,
            tokenizer,
            config,
            device,
        }
    }

    /// The answers to one batch of prompts: each reply up to its first stop token, decoded
    /// without special tokens and trimmed.
    pub fn answer(&self, prompts: &[Prompt]) -> Result<Vec<String>, EvaluationError> {
        let ids: Vec<Vec<u32>> = prompts.iter().map(|p| p.ids.clone()).collect();
        let pixels = self.pixels(prompts)?;
        let batch = VlmBatch::left_padded(&ids, self.config.pad_token_id, pixels, &self.device)?;
        let replies = self.model.generate(batch, &self.config, |_| {})?;
        replies.iter().map(|reply| self.decode(reply)).collect()
    }

    /// The answers to many prompts, `batch_size` at a time.
    pub fn answer_all(
        &self,
        prompts: &[Prompt],
        batch_size: usize,
    ) -> Result<Vec<String>, EvaluationError> {
        let mut answers = Vec::with_capacity(prompts.len());
        for batch in prompts.chunks(batch_size.max(1)) {
            answers.extend(self.answer(batch)?);
        }
        Ok(answers)
    }

    /// A reply's text up to its first stop token, without special tokens, trimmed.
    fn decode(&self, reply: &[u32]) -> Result<String, EvaluationError> {
        let stops = &self.config.stop_token_ids;
        let end = reply
            .iter()
            .position(|id| stops.contains(id))
            .unwrap_or(reply.len());
        Ok(self
            .tokenizer
            .decode(&reply[..end], true)?
            .trim()
            .to_string())
    }

    /// `[images, 3, height, width]` of the prompts that show an image, in order.
    fn pixels(&self, prompts: &[Prompt]) -> Result<Option<Tensor<B, 4>>, EvaluationError> {
        let images: Vec<&PixelValues> = prompts.iter().filter_map(|p| p.pixels.as_ref()).collect();
        let Some(first) = images.first() else {
            return Ok(None);
        };
        let expected = first.shape;
        let mut data = Vec::with_capacity(images.len() * first.data.len());
        for image in &images {
            if image.shape != expected {
                let found = image.shape;
                return Err(EvaluationError::ImageShape { expected, found });
            }
            data.extend_from_slice(&image.data);
        }
        let [channels, height, width] = expected;
        let data = TensorData::new(data, [images.len(), channels, height, width]);
        Ok(Some(Tensor::from_data(data, &self.device)))
    }
}

#[cfg(test)]
mod tests {
    use vlm_data::Turn;

    use super::*;

    #[test]
    fn every_answer_is_a_question_asked_with_the_earlier_answers() {
        let conversation = Conversation {
            id: "c".into(),
            image: None,
            turns: vec![
                Turn::user("<image>\nHow many?"),
                Turn::assistant("Two."),
                Turn::user("Which colour?"),
                Turn::assistant("Red"),
            ],
        };
        let questions: Vec<Question> = Question::all_of(&conversation).collect();
        assert_eq!(questions.len(), 2);
        assert_eq!(questions[0].id, "c#0");
        assert_eq!(questions[0].text(), "How many?");
        assert_eq!(questions[1].prompt.turns.len(), 3);
        assert_eq!(questions[1].reference, "Red");
        let grade = questions[0].grade(" two ");
        assert!(grade.exact && grade.contains);
        assert!(!questions[1].grade("dark red").exact && questions[1].grade("dark red").contains);
    }
}
