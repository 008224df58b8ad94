//! The model thread: continuous batching. Requests wait in a bounded queue; between decode
//! steps the waiting ones join the running batch (up to `--max-batch-size` answers), each
//! prefilled alone with its image, and every step then decodes one token of every running
//! answer in one forward pass. Each token's text is sent back as soon as it is decoded.
//!
//! An answer leaves the batch as soon as it ends: a stop token, its `max_tokens`, one of its
//! stop strings, or its client gone away (the receiving end closed), so an abandoned request
//! does not hold the model. Greedy answers are the same tokens as one at a time
//! (`--max-batch-size 1`). The HTTP side stays responsive because decoding images and
//! tokenizing happen on its own threads before a request joins the queue.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::{Receiver, UnboundedSender};
use vlm::backend::Inference;
use vlm::burn::tensor::{Device, Tensor, TensorData};
use vlm::data::{TextStreamer, Tokenizer};
use vlm::model::{ImageFeatureCache, ModelError, QwenVlm};
use vlm::qwen::{
    ContinuousBatch, Decoding, FinishReason, Finished, GenerationConfig, Prompt as ModelPrompt,
    QwenModel, SamplingParams,
};

use crate::api::Sampling;
use crate::metrics::{Metrics, Running};
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
    /// The most answers decoded together.
    pub max_batch_size: usize,
    /// Projected features of recent images (`--image-cache-size`).
    pub image_features: RefCell<ImageFeatureCache<B>>,
}

/// The running answers, each tagged with its [`Answer`].
type Batch<'w> = ContinuousBatch<'w, B, QwenModel<B>, Answer<'w>>;

/// An answer under way: its job and the state of its text.
struct Answer<'w> {
    job: Job,
    streamer: TextStreamer<'w>,
    stop: StopText,
    completion_tokens: usize,
    last_token: Option<Instant>,
    failure: Option<String>,
    /// Counted in `vlm_running_sequences` until the answer is complete.
    running: Running<'w>,
}

impl Worker {
    /// Answers jobs until every sender is gone (the server shut down) and the last answer is
    /// complete.
    pub fn run(self, mut jobs: Receiver<Job>) {
        let mut batch = ContinuousBatch::new(self.model.language_model());
        while self.admit(&mut batch, &mut jobs) {
            self.metrics.set_batch_size(batch.len());
            match batch.step(|answer, token| self.on_token(answer, token)) {
                Ok(finished) => finished.into_iter().for_each(|f| self.complete(f)),
                Err(err) => {
                    for answer in batch.clear() {
                        answer.send_last(Event::Failed(err.to_string()));
                    }
                }
            }
            self.metrics.set_batch_size(batch.len());
        }
    }

    /// Lets waiting jobs join until the batch is full or none waits, waiting for one while
    /// nothing runs; `false` once the queue has closed and nothing runs.
    fn admit<'w>(&'w self, batch: &mut Batch<'w>, jobs: &mut Receiver<Job>) -> bool {
        while batch.len() < self.max_batch_size {
            let job = match batch.is_empty() {
                true => match jobs.blocking_recv() {
                    Some(job) => job,
                    None => return false,
                },
                false => match jobs.try_recv() {
                    Ok(job) => job,
                    Err(_) => break,
                },
            };
            self.start(batch, job);
        }
        true
    }

    /// Prefills a job's prompt and lets it join the batch after its first token.
    fn start<'w>(&'w self, batch: &mut Batch<'w>, job: Job) {
        let config = self.generation_config(&job.sampling);
        let events = job.events.clone();
        let prompt = self.model_prompt(&job.prompt);
        let answer = Answer {
            streamer: TextStreamer::new(&self.tokenizer, true),
            stop: StopText::new(job.sampling.stop.clone()),
            job,
            completion_tokens: 0,
            last_token: None,
            failure: None,
            running: self.metrics.running(),
        };
        let joined = prompt.map_err(|err| err.to_string()).and_then(|prompt| {
            let on_token = |answer: &mut Answer<'w>, token| self.on_token(answer, token);
            batch
                .join(prompt, &config, answer, on_token)
                .map_err(|err| err.to_string())
        });
        match joined {
            Ok(Some(finished)) => self.complete(finished),
            Ok(None) => {}
            // The client may be gone; nothing is left to tell it.
            Err(message) => {
                let _ = events.send(Event::Failed(message));
            }
        }
    }

    /// Takes an answer's next token: counts it, sends its text, and says whether the answer
    /// must end here (a stop string, a failure, its client gone).
    fn on_token(&self, answer: &mut Answer<'_>, token: u32) -> ControlFlow<()> {
        answer.completion_tokens += 1;
        self.observe_token(answer.job.arrived, &mut answer.last_token);
        match answer.streamer.push(token) {
            Ok(Some(chunk)) => {
                let text = answer.stop.push(&chunk);
                answer.send_text(text);
            }
            Ok(None) => {}
            Err(err) => {
                answer.failure.get_or_insert(err.to_string());
            }
        }
        let done =
            answer.stop.stopped() || answer.failure.is_some() || answer.job.events.is_closed();
        match done {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    }

    /// Sends the rest of a finished answer's text and how it ended.
    fn complete(&self, finished: Finished<Answer<'_>>) {
        let Finished {
            tag: mut answer,
            reason,
        } = finished;
        let event = match answer.flush() {
            Ok(()) => {
                let stopped = answer.stop.stopped() || reason == FinishReason::StopToken;
                Event::Done(Finish {
                    reason: if stopped { "stop" } else { "length" },
                    prompt_tokens: answer.job.prompt.ids.len(),
                    completion_tokens: answer.completion_tokens,
                })
            }
            Err(message) => Event::Failed(message),
        };
        answer.send_last(event);
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

    /// The decode loop's settings for a request.
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

    /// Where the decode loop starts for `prompt`: its ids with its image's features (from
    /// the cache when the same pixels came before) spliced in.
    fn model_prompt(&self, prompt: &Prompt) -> Result<ModelPrompt<B>, ModelError> {
        let ids: Vec<i64> = prompt.ids.iter().map(|&id| i64::from(id)).collect();
        let len = ids.len();
        let input_ids = Tensor::from_data(TensorData::new(ids, [1, len]), &self.device);
        let features = match &prompt.pixels {
            Some(pixels) => Some(self.image_features(&pixels.data, pixels.shape)?),
            None => None,
        };
        self.model.prompt_with_features(input_ids, features)
    }

    /// The projected features of one preprocessed image `[channels, height, width]`.
    fn image_features(
        &self,
        pixels: &[f32],
        shape: [usize; 3],
    ) -> Result<Tensor<B, 3>, ModelError> {
        let mut cache = self.image_features.borrow_mut();
        let features = cache.get_or_compute(pixels, shape, || {
            let [channels, height, width] = shape;
            let data = TensorData::new(pixels.to_vec(), [1, channels, height, width]);
            self.model
                .image_features(Tensor::from_data(data, &self.device))
        });
        self.metrics.set_image_cache(cache.hits(), cache.misses());
        features
    }
}

impl Answer<'_> {
    /// Sends a piece of text, unless empty.
    fn send_text(&self, text: String) {
        if !text.is_empty() {
            // The client may be gone; generation stops at the next token.
            let _ = self.job.events.send(Event::Text(text));
        }
    }

    /// Sends the text held back by the streamer and the stop-string filter, or the failure
    /// seen while decoding.
    fn flush(&mut self) -> Result<(), String> {
        if let Some(message) = self.failure.take() {
            return Err(message);
        }
        if let Some(rest) = self.streamer.finish().map_err(|err| err.to_string())? {
            let text = self.stop.push(&rest);
            self.send_text(text);
        }
        let text = self.stop.finish();
        self.send_text(text);
        Ok(())
    }

    /// Ends the answer with `event`: no longer counted as running, then its client hears.
    fn send_last(self, event: Event) {
        drop(self.running);
        // The client may be gone; nothing is left to tell it.
        let _ = self.job.events.send(event);
    }
}
