//! The model thread: requests wait in a bounded queue and are answered one at a time, in
//! order of arrival (no batching), each token's text sent back as soon as it is decoded.
//!
//! One generation at a time keeps memory flat and latency predictable on one device; the
//! HTTP side stays responsive because decoding images and tokenizing happen on its own
//! threads before a request joins the queue.
//!
//! Generation ends early when a stop string appears or when the client has gone away (its
//! receiving end is closed), so an abandoned request does not hold the model.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{Receiver, UnboundedSender};
use vlm::backend::Inference;
use vlm::burn::tensor::{Device, Tensor, TensorData};
use vlm::data::{TextStreamer, Tokenizer};
use vlm::model::{QwenVlm, VlmBatch};
use vlm::qwen::{Decoding, GenerationConfig, SamplingParams};

use crate::api::Sampling;
use crate::metrics::Metrics;
use crate::prompt::Prompt;
use crate::stop::StopText;

type B = Inference;

/// One request for the model thread.
pub struct Job {
    /// The prompt.
    pub prompt: Prompt,
    /// How to choose tokens.
    pub sampling: Sampling,
    /// Where the answer goes, piece by piece.
    pub events: UnboundedSender<Event>,
    /// When the request arrived, for the time to first token.
    pub arrived: Instant,
}

/// What the model thread reports about a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The next piece of the answer's text.
    Text(String),
    /// The answer is complete.
    Done(Finish),
    /// Generation failed (a server error).
    Failed(String),
}

/// How an answer ended, with OpenAI's token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    /// `stop` (a stop token or stop string) or `length` (`max_tokens` reached).
    pub reason: &'static str,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated for the answer.
    pub completion_tokens: usize,
}

/// The model and what generation needs beside it.
pub struct Worker {
    /// The model.
    pub model: QwenVlm<B>,
    /// Its tokenizer, to decode the answer.
    pub tokenizer: Tokenizer,
    /// Ids that end an answer.
    pub stop_token_ids: Vec<u32>,
    /// The device the model is on.
    pub device: Device<B>,
    /// Where token counts and latencies go.
    pub metrics: Arc<Metrics>,
}

impl Worker {
    /// Answers jobs until every sender is gone (the server shut down).
    pub fn run(self, mut jobs: Receiver<Job>) {
        while let Some(job) = jobs.blocking_recv() {
            // Counted as running until its answer is complete, before the client hears so.
            let running = self.metrics.running();
            let answer = self.answer(&job);
            drop(running);
            let event = match answer {
                Ok(finish) => Event::Done(finish),
                Err(message) => Event::Failed(message),
            };
            // The client may be gone; nothing is left to tell it.
            let _ = job.events.send(event);
        }
    }

    /// Generates one answer, sending its text as it comes.
    fn answer(&self, job: &Job) -> Result<Finish, String> {
        let config = self.generation_config(&job.sampling);
        let mut streamer = TextStreamer::new(&self.tokenizer, true);
        let mut stop = StopText::new(job.sampling.stop.clone());
        let mut completion_tokens = 0;
        let mut stopped_by_token = false;
        let mut failure = None;
        let mut last_token = None;
        let send = |text: String| {
            if !text.is_empty() {
                let _ = job.events.send(Event::Text(text));
            }
        };
        self.model
            .generate_until(self.batch(&job.prompt), &config, |tokens| {
                completion_tokens += 1;
                self.observe_token(job.arrived, &mut last_token);
                stopped_by_token = config.stop_token_ids.contains(&tokens[0]);
                match streamer.push(tokens[0]) {
                    Ok(Some(chunk)) => send(stop.push(&chunk)),
                    Ok(None) => {}
                    Err(err) => {
                        failure.get_or_insert(err.to_string());
                    }
                }
                match stop.stopped() || failure.is_some() || job.events.is_closed() {
                    true => ControlFlow::Break(()),
                    false => ControlFlow::Continue(()),
                }
            })
            .map_err(|err| err.to_string())?;
        if let Some(message) = failure {
            return Err(message);
        }
        if let Some(rest) = streamer.finish().map_err(|err| err.to_string())? {
            send(stop.push(&rest));
        }
        send(stop.finish());
        let stopped = stop.stopped() || stopped_by_token;
        Ok(Finish {
            reason: if stopped { "stop" } else { "length" },
            prompt_tokens: job.prompt.ids.len(),
            completion_tokens,
        })
    }

    /// Counts a token and records its latency: from the request's arrival for the first,
    /// from the previous token (`last`) for the others.
    fn observe_token(&self, arrived: Instant, last: &mut Option<Instant>) {
        let now = Instant::now();
        match last.replace(now) {
            None => self.metrics.time_to_first_token.observe(now - arrived),
            Some(previous) => self.metrics.inter_token_latency.observe(now - previous),
        }
        self.metrics.count_token();
    }

    fn generation_config(&self, sampling: &Sampling) -> GenerationConfig {
        let mut config = GenerationConfig::greedy(sampling.max_tokens);
        config.stop_token_ids = self.stop_token_ids.clone();
        if sampling.temperature > 0.0 {
            config.decoding = Decoding::Sample(SamplingParams {
                temperature: sampling.temperature,
                top_k: None,
                top_p: sampling.top_p,
                seed: sampling.seed,
            });
        }
        config
    }

    /// The prompt as a batch of one.
    fn batch(&self, prompt: &Prompt) -> VlmBatch<B> {
        let ids: Vec<i64> = prompt.ids.iter().map(|&id| i64::from(id)).collect();
        let len = ids.len();
        let input_ids = Tensor::from_data(TensorData::new(ids, [1, len]), &self.device);
        let pixel_values = prompt.pixels.as_ref().map(|pixels| {
            let [channels, height, width] = pixels.shape;
            let data = TensorData::new(pixels.data.clone(), [1, channels, height, width]);
            Tensor::from_data(data, &self.device)
        });
        VlmBatch {
            input_ids,
            attention_mask: None,
            pixel_values,
        }
    }
}
