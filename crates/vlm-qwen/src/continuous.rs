//! Continuous batching: independent sequences decoded together, one token each per step, that
//! join and leave the running batch between steps (vLLM-style scheduling, simplified).
//!
//! A sequence is prefilled alone (its prompt in one forward pass, as [`decode`](crate::decode)
//! does), chooses its first token, then joins the batch: its cache rows are stacked under the
//! others', left-padded to a common length (the mask hides the padding and position ids
//! follow each row's own tokens). Every step feeds each sequence's last token in one forward
//! pass; a sequence leaves as soon as it ends, and the positions that are padding in every
//! remaining row are dropped. Each sequence keeps its own settings: sampling, penalty,
//! stop tokens, `max_new_tokens`.

use std::ops::ControlFlow;

use burn::tensor::backend::Backend;

use crate::chooser::TokenChooser;
use crate::generation::{Decoder, Prompt};
use crate::{GenerationConfig, LanguageModel, QwenError, RowCache};

/// Why a sequence left the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// It emitted one of its stop tokens (kept as its last token).
    StopToken,
    /// `on_token` returned [`ControlFlow::Break`] (a stop string seen, a client gone).
    Interrupted,
    /// It reached its `max_new_tokens`.
    Length,
}

/// A sequence that left the batch, with the tag it joined with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished<T> {
    /// What the caller attached to the sequence.
    pub tag: T,
    /// Why it ended.
    pub reason: FinishReason,
}

/// Sequences being decoded together, each carrying a caller's tag `T` (where its tokens go).
///
/// Greedy tokens equal those of [`decode`](crate::decode) run on each prompt alone: the
/// padding only adds exact zeros to the attention, so logits differ by rounding at most.
pub struct ContinuousBatch<'a, B: Backend, L: LanguageModel<B>, T> {
    language_model: &'a L,
    decoder: Option<Decoder<'a, B, L>>,
    sequences: Vec<Sequence<T>>,
}

/// One running sequence: its token choice and the token chosen but not fed yet.
struct Sequence<T> {
    tag: T,
    chooser: TokenChooser,
    max_new_tokens: usize,
    generated: usize,
    pending: u32,
}

impl<'a, B: Backend, L: LanguageModel<B>, T> ContinuousBatch<'a, B, L, T>
where
    L::Cache: RowCache,
{
    /// An empty batch over `language_model`.
    pub fn new(language_model: &'a L) -> Self {
        Self {
            language_model,
            decoder: None,
            sequences: Vec::new(),
        }
    }

    /// Number of running sequences.
    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    /// Whether no sequence is running.
    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// Prefills `prompt` (one row) alone, chooses its first token and passes it to
    /// `on_token`; the sequence then joins the batch, unless it has already ended: then it
    /// is returned (so is one asked for no token, after nothing is fed).
    ///
    /// Fails, leaving the batch as it was, on invalid settings (`use_cache` off included:
    /// batched decoding goes through the cache), a prompt of several rows, or a failed
    /// forward pass.
    pub fn join(
        &mut self,
        prompt: Prompt<B>,
        config: &GenerationConfig,
        tag: T,
        on_token: impl FnOnce(&mut T, u32) -> ControlFlow<()>,
    ) -> Result<Option<Finished<T>>, QwenError> {
        if !config.use_cache {
            return Err(QwenError::InvalidGeneration(
                "continuous batching decodes through the KV cache: use_cache must be true".into(),
            ));
        }
        let rows = prompt.embeds.dims()[0];
        if rows != 1 || prompt.history.len() != 1 {
            return Err(QwenError::InvalidInput(format!(
                "a sequence joins a batch alone, not as a prompt of {rows} rows"
            )));
        }
        let vocab_size = self.language_model.vocab_size();
        let chooser = TokenChooser::new(config, prompt.history, vocab_size)?;
        let mut sequence = Sequence {
            tag,
            chooser,
            max_new_tokens: config.max_new_tokens,
            generated: 0,
            pending: config.pad_token_id,
        };
        if config.max_new_tokens == 0 {
            return Ok(Some(sequence.finish(FinishReason::Length)));
        }
        let mut decoder = Decoder::new(self.language_model, true);
        let mut logits = decoder.feed(prompt.embeds, prompt.attention_mask)?;
        let first = logits.rows_mut().next();
        if let Some(reason) = first.and_then(|row| sequence.advance(row, on_token)) {
            return Ok(Some(sequence.finish(reason)));
        }
        match &mut self.decoder {
            Some(running) => running.join(decoder)?,
            None => self.decoder = Some(decoder),
        }
        self.sequences.push(sequence);
        Ok(None)
    }

    /// Feeds every sequence its last token in one forward pass, chooses each one's next token
    /// and passes it to `on_token`; returns the sequences that ended, which have left.
    ///
    /// After a failed forward pass the batch is unchanged; [`clear`](Self::clear) hands the
    /// tags back.
    pub fn step(
        &mut self,
        mut on_token: impl FnMut(&mut T, u32) -> ControlFlow<()>,
    ) -> Result<Vec<Finished<T>>, QwenError> {
        let Some(decoder) = &mut self.decoder else {
            return Ok(Vec::new());
        };
        let tokens: Vec<u32> = self.sequences.iter().map(|s| s.pending).collect();
        let mut logits = decoder.feed_tokens(&tokens)?;
        let mut kept = Vec::with_capacity(self.sequences.len());
        let mut finished = Vec::new();
        for (row, (mut sequence, logits)) in
            self.sequences.drain(..).zip(logits.rows_mut()).enumerate()
        {
            match sequence.advance(logits, &mut on_token) {
                Some(reason) => finished.push(sequence.finish(reason)),
                None => kept.push((row, sequence)),
            }
        }
        let (rows, sequences): (Vec<usize>, Vec<Sequence<T>>) = kept.into_iter().unzip();
        self.sequences = sequences;
        if rows.is_empty() {
            self.decoder = None;
        } else if !finished.is_empty() {
            decoder.retain(&rows)?;
        }
        Ok(finished)
    }

    /// Ends every sequence and returns their tags (after a failed step, or to shut down).
    pub fn clear(&mut self) -> Vec<T> {
        self.decoder = None;
        self.sequences.drain(..).map(|s| s.tag).collect()
    }
}

impl<T> Sequence<T> {
    /// Chooses the next token from `logits`, passes it to `on_token` and says whether the
    /// sequence ends with it.
    fn advance(
        &mut self,
        logits: &mut [f32],
        on_token: impl FnOnce(&mut T, u32) -> ControlFlow<()>,
    ) -> Option<FinishReason> {
        let token = self.chooser.choose([logits])[0];
        self.pending = token;
        self.generated += 1;
        let flow = on_token(&mut self.tag, token);
        if self.chooser.all_finished() {
            Some(FinishReason::StopToken)
        } else if flow.is_break() {
            Some(FinishReason::Interrupted)
        } else if self.generated == self.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        }
    }

    fn finish(self, reason: FinishReason) -> Finished<T> {
        Finished {
            tag: self.tag,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Tensor, TensorData};
    use vlm_testkit::{device, fixture, TestBackend};

    use crate::generation::Decoder;
    use crate::QwenModel;

    type B = TestBackend;

    /// A decoder that has been fed the prompt `ids`.
    fn prefilled<'m>(model: &'m QwenModel<B>, ids: &[u32]) -> Decoder<'m, B, QwenModel<B>> {
        let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
        let len = ids.len();
        let ids = Tensor::from_data(TensorData::new(ids, [1, len]), &device());
        let embeds = model.embed(ids).expect("embed");
        let mut decoder = Decoder::new(model, true);
        let mask = Tensor::ones([1, len], &device());
        decoder.feed(embeds, mask).expect("prefill");
        decoder
    }

    fn assert_close(what: &str, actual: &[f32], expected: &[f32]) {
        let diff = actual
            .iter()
            .zip(expected)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "{what}: logits differ by {diff}");
    }

    #[test]
    fn joined_rows_compute_the_logits_of_each_sequence_alone() {
        for name in ["qwen2_tied", "qwen3", "qwen_v1"] {
            let model = QwenModel::<B>::load(fixture(name), &device()).expect("model");
            let (short, long) = ([5, 9, 2], [7, 1, 4, 4, 8, 3, 6, 2]);
            let mut short_alone = prefilled(&model, &short);
            let mut long_alone = prefilled(&model, &long);
            let mut batch = prefilled(&model, &short);
            batch.join(prefilled(&model, &long)).expect("join");
            for (step, tokens) in [[3u32, 6], [1, 2], [8, 5]].iter().enumerate() {
                let both = batch.feed_tokens(tokens).expect("batched step");
                let short_logits = short_alone.feed_tokens(&tokens[..1]).expect("short");
                let long_logits = long_alone.feed_tokens(&tokens[1..]).expect("long");
                assert_close(
                    &format!("{name} short, step {step}"),
                    &both[0],
                    &short_logits[0],
                );
                assert_close(
                    &format!("{name} long, step {step}"),
                    &both[1],
                    &long_logits[0],
                );
            }
            // The long sequence leaves; the short one's positions and cache stay its own, and
            // the padding every remaining row has is dropped.
            batch.retain(&[0]).expect("retain");
            let mask = batch.mask.clone().expect("mask");
            assert_eq!(mask.dims(), [1, short.len() + 3], "{name}: padding dropped");
            let alone = short_alone.feed_tokens(&[4]).expect("short");
            let left = batch.feed_tokens(&[4]).expect("after leaving");
            assert_close(&format!("{name} after the other left"), &left[0], &alone[0]);
        }
    }
}
