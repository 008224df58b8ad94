//! Choosing the next token from a row of logits: greedy or sampled, with Hugging Face's
//! repetition penalty, temperature, top-k and top-p, from a seeded generator.

use std::collections::BTreeSet;

use vlm_rng::SplitMix64;

use crate::QwenError;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoding {
    /// The most likely token (Hugging Face `do_sample=False`; ties go to the lowest id).
    Greedy,
    /// A draw from the softmax of the filtered logits (Hugging Face `do_sample=True`).
    Sample(SamplingParams),
}

/// Settings of [`Decoding::Sample`], applied in Hugging Face's order: temperature, top-k, top-p.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Logits are divided by this (> 0); below 1 sharpens, above 1 flattens.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (ties with the k-th are kept).
    pub top_k: Option<usize>,
    /// Keep the most likely tokens whose probabilities reach this mass, in (0, 1].
    pub top_p: Option<f32>,
    /// Seed of the generator: equal seeds and inputs give equal draws.
    pub seed: u64,
}

/// Picks tokens for one generation run; holds the random state across steps.
#[derive(Debug, Clone)]
pub struct Sampler {
    decoding: Decoding,
    repetition_penalty: f32,
    rng: SplitMix64,
}

impl Sampler {
    /// A sampler; `repetition_penalty` 1.0 disables the penalty.
    pub fn new(decoding: Decoding, repetition_penalty: f32) -> Result<Self, QwenError> {
        check_positive("repetition_penalty", repetition_penalty)?;
        let seed = match &decoding {
            Decoding::Greedy => 0,
            Decoding::Sample(params) => {
                params.validate()?;
                params.seed
            }
        };
        Ok(Self {
            decoding,
            repetition_penalty,
            rng: SplitMix64::new(seed),
        })
    }

    /// The next token for one sequence, given its logits (modified in place) and the tokens
    /// it holds so far (`history`, penalised when the penalty is not 1.0).
    pub fn next_token(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        apply_repetition_penalty(logits, history, self.repetition_penalty);
        let index = match &self.decoding {
            Decoding::Greedy => argmax(logits),
            Decoding::Sample(params) => {
                filter(logits, params);
                draw(&softmax(logits), &mut self.rng)
            }
        };
        index as u32
    }
}

impl SamplingParams {
    fn validate(&self) -> Result<(), QwenError> {
        check_positive("temperature", self.temperature)?;
        if self.top_k == Some(0) {
            return Err(QwenError::InvalidGeneration(
                "top_k must be at least 1".into(),
            ));
        }
        match self.top_p {
            Some(p) if !(p > 0.0 && p <= 1.0) => Err(QwenError::InvalidGeneration(format!(
                "top_p {p} is outside (0, 1]"
            ))),
            _ => Ok(()),
        }
    }
}

fn check_positive(name: &str, value: f32) -> Result<(), QwenError> {
    if value > 0.0 && value.is_finite() {
        return Ok(());
    }
    Err(QwenError::InvalidGeneration(format!(
        "{name} must be positive and finite, got {value}"
    )))
}

/// Hugging Face's penalty: each distinct seen token's logit is divided by `penalty` when
/// positive and multiplied by it when negative.
fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let vocab = logits.len();
    let seen: BTreeSet<usize> = history.iter().map(|&id| id as usize).collect();
    for id in seen.into_iter().filter(|&id| id < vocab) {
        let logit = logits[id];
        logits[id] = if logit < 0.0 {
            logit * penalty
        } else {
            logit / penalty
        };
    }
}

/// Index of the first largest logit.
fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (index, &logit) in logits.iter().enumerate() {
        if logit > logits[best] {
            best = index;
        }
    }
    best
}

/// Temperature, then top-k, then top-p; removed tokens get `-inf`.
fn filter(logits: &mut [f32], params: &SamplingParams) {
    for logit in logits.iter_mut() {
        *logit /= params.temperature;
    }
    if let Some(k) = params.top_k {
        keep_top_k(logits, k);
    }
    if let Some(p) = params.top_p {
        keep_top_p(logits, p);
    }
}

fn keep_top_k(logits: &mut [f32], k: usize) {
    if k >= logits.len() {
        return;
    }
    let mut sorted = logits.to_vec();
    sorted.sort_unstable_by(|a, b| b.total_cmp(a));
    let threshold = sorted[k - 1];
    for logit in logits.iter_mut().filter(|logit| **logit < threshold) {
        *logit = f32::NEG_INFINITY;
    }
}

/// Keeps, from the most likely down, each token whose more likely predecessors hold less
/// than `p` of the probability mass (Hugging Face's rule; the top token always stays).
fn keep_top_p(logits: &mut [f32], p: f32) {
    let probs = softmax(logits);
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let mut mass_before = 0.0;
    for index in order {
        if mass_before >= f64::from(p) {
            logits[index] = f32::NEG_INFINITY;
        }
        mass_before += probs[index];
    }
}

/// Softmax in f64; `-inf` logits get probability 0.
fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits
        .iter()
        .map(|&logit| f64::from(logit - max).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Draws an index with the given probabilities.
fn draw(probs: &[f64], rng: &mut SplitMix64) -> usize {
    let target = rng.next_f64();
    let mut cumulative = 0.0;
    let mut last_possible = 0;
    for (index, &prob) in probs.iter().enumerate() {
        if prob <= 0.0 {
            continue;
        }
        cumulative += prob;
        last_possible = index;
        if target < cumulative {
            return index;
        }
    }
    last_possible
}
