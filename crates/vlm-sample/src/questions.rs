//! The questions a quickstart-style program asks its model: every assistant turn of the
//! sample conversations, asked in its conversation with the earlier answers given, as the
//! model's prompt with the image (or the image blanked, to measure what the model answers
//! without looking).

use std::path::PathBuf;

use vlm_data::{Conversation, InvalidRecord, SampleEncoder};
use vlm_image::PixelValues;
use vlm_model::{Prompt, Question};

use crate::sample::Pixels;
use crate::tiny_vlm::IMAGE_SIDE;
use crate::{CompactVocab, CompactVocabError};

/// A question asked in its conversation, with its image's path and pixels.
pub struct Asked {
    /// The question and its reference answer.
    pub question: Question,
    /// The image's path.
    pub image: PathBuf,
    pixels: Pixels,
}

impl Asked {
    /// The model's prompt: the Qwen prompt `ids` in compact ids, the pixels (zeros, a flat
    /// grey image after normalisation, with `blank`).
    pub fn prompt(
        &self,
        vocab: &CompactVocab,
        ids: &[u32],
        blank: bool,
    ) -> Result<Prompt, CompactVocabError> {
        let data = if blank {
            vec![0.0; self.pixels.len()]
        } else {
            self.pixels.to_vec()
        };
        Ok(Prompt {
            ids: vocab.compact_ids(ids)?,
            pixels: Some(PixelValues {
                data,
                shape: [3, IMAGE_SIDE, IMAGE_SIDE],
            }),
        })
    }
}

/// Every question of the conversations, each asked with the earlier answers given.
pub fn questions_in(conversations: &[(Conversation, Pixels)]) -> Vec<Asked> {
    conversations
        .iter()
        .flat_map(|(conv, pixels)| {
            Question::all_of(conv).map(|question| Asked {
                question,
                image: conv.image.clone().unwrap_or_default(),
                pixels: pixels.clone(),
            })
        })
        .collect()
}

/// The Qwen ids of every question's prompt (ChatML, ending with the assistant header).
pub fn encode_prompts(
    encoder: &SampleEncoder,
    questions: &[Asked],
) -> Result<Vec<Vec<u32>>, InvalidRecord> {
    questions
        .iter()
        .map(|q| Ok(encoder.encode_prompt(&q.question.prompt)?.input_ids))
        .collect()
}
