//! The per-step token choice of the decode loop.

use crate::sampling::Sampler;
use crate::{GenerationConfig, QwenError};

/// Picks each sequence's next token from its logits and tracks which sequences have stopped.
///
/// A running sequence's token is sampled (with the repetition penalty over its history);
/// a sequence that has emitted a stop token continues with `pad_token_id`.
#[derive(Debug)]
pub(crate) struct TokenChooser {
    config: GenerationConfig,
    sampler: Sampler,
    history: Vec<Vec<u32>>,
    finished: Vec<bool>,
    generated: Vec<Vec<u32>>,
}

impl TokenChooser {
    /// A chooser for one sequence per `history` entry (the tokens the repetition penalty
    /// sees before generation starts), over a vocabulary of `vocab_size`.
    ///
    /// Fails with [`QwenError::InvalidGeneration`] when the settings are invalid or the
    /// pad id is outside the vocabulary.
    pub(crate) fn new(
        config: &GenerationConfig,
        history: Vec<Vec<u32>>,
        vocab_size: usize,
    ) -> Result<Self, QwenError> {
        if config.pad_token_id as usize >= vocab_size {
            return Err(QwenError::InvalidGeneration(format!(
                "pad_token_id {} is outside the vocabulary of {vocab_size}",
                config.pad_token_id
            )));
        }
        let batch = history.len();
        Ok(Self {
            config: config.clone(),
            sampler: Sampler::new(config.decoding.clone(), config.repetition_penalty)?,
            history,
            finished: vec![false; batch],
            generated: vec![Vec::new(); batch],
        })
    }

    /// One token per sequence from its last logits, recorded as generated.
    pub(crate) fn choose<'a>(
        &mut self,
        logits: impl IntoIterator<Item = &'a mut [f32]>,
    ) -> Vec<u32> {
        let mut tokens = Vec::with_capacity(self.finished.len());
        for (row, row_logits) in logits.into_iter().enumerate() {
            let token = if self.finished[row] {
                self.config.pad_token_id
            } else {
                let token = self.sampler.next_token(row_logits, &self.history[row]);
                self.history[row].push(token);
                self.finished[row] = self.config.stop_token_ids.contains(&token);
                token
            };
            self.generated[row].push(token);
            tokens.push(token);
        }
        tokens
    }

    /// Whether every sequence has emitted a stop token.
    pub(crate) fn all_finished(&self) -> bool {
        self.finished.iter().all(|&done| done)
    }

    /// The tokens generated so far, per sequence.
    pub(crate) fn into_generated(self) -> Vec<Vec<u32>> {
        self.generated
    }
}
