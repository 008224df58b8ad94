//! AI Challenger 2017 image-caption annotations
//! (`caption_train_annotations_20170902.json` and files of that format):
//!
//! ```json
//! [{"url": "http://...", "image_id": "8f00f3d0f1008e085ab660e70dffced16a8259f6.jpg",
//!   "caption": ["两个衣着休闲的人在平整的道路上交谈", ...]}, ...]
//! ```
//!
//! Each caption becomes the answer to the fixed Chinese prompt [`AIC_PROMPT`], with `<image>`
//! before or after it (chosen at random from the source's seed). [`CaptionMode`] picks one
//! sample per caption, one random caption per image, or each image's first caption. Captions are trimmed of surrounding
//! whitespace. Sample ids are `image_id#caption_index`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conversation::{Conversation, Turn, IMAGE_PLACEHOLDER};

use super::images::ImageRoot;
use super::{Parsed, Samples, Skip, SkipReason};
use vlm_rng::SplitMix64;

/// The question every AI Challenger caption answers ("What does this image describe?").
pub const AIC_PROMPT: &str = "这幅图像描述了什么？";

/// Which captions of an AI Challenger image become samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionMode {
    /// One sample per (non-empty) caption: five samples for an image with five captions.
    #[default]
    Each,
    /// One sample per image, with one of its non-empty captions chosen at random (seeded).
    OneRandom,
    /// One sample per image, with its first non-empty caption (deterministic; the synthetic
    /// sample data uses it so that each image has one answer phrasing).
    First,
}

#[derive(Deserialize)]
struct Record {
    image_id: String,
    #[serde(alias = "captions")]
    caption: Vec<String>,
}

/// Random stream for the caption choice; prompt placements use `PROMPT_STREAM + caption`.
const CHOICE_STREAM: u64 = 0;
const PROMPT_STREAM: u64 = 1;

/// Turns array element `index` into samples (or skips), with the choices drawn from `seed`.
pub(crate) fn parse(
    value: Value,
    index: usize,
    images: &ImageRoot,
    mode: CaptionMode,
    seed: u64,
) -> Parsed {
    let record: Record = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return Parsed::Skip(Skip::new(SkipReason::Malformed, e.to_string())),
    };
    if record.image_id.trim().is_empty() {
        return Parsed::Skip(Skip::new(SkipReason::Malformed, "empty `image_id`"));
    }
    if record.caption.is_empty() {
        let reason = SkipReason::Invalid(crate::skip::SkipReason::EmptyConversation);
        return Parsed::Skip(Skip::new(reason, "no captions"));
    }
    let (captions, skipped) = non_empty_captions(&record.caption);
    let chosen = match mode {
        CaptionMode::Each => captions,
        CaptionMode::OneRandom => one_random(captions, seed, index),
        CaptionMode::First => captions.into_iter().take(1).collect(),
    };
    let image = match images.resolve(&record.image_id) {
        Ok(image) => image,
        Err(skip) => return Parsed::Skip(skip),
    };
    let conversations = chosen
        .into_iter()
        .map(|(j, text)| sample(&record.image_id, &image, j, text, seed, index))
        .collect();
    Parsed::Samples(Samples {
        image: Some(image),
        conversations,
        skipped,
    })
}

/// The trimmed non-empty captions with their indices, and a skip for each empty one.
fn non_empty_captions(captions: &[String]) -> (Vec<(usize, &str)>, Vec<Skip>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for (j, caption) in captions.iter().enumerate() {
        match caption.trim() {
            "" => skipped.push(Skip::new(
                SkipReason::EmptyCaption,
                format!("caption {j} is empty"),
            )),
            text => kept.push((j, text)),
        }
    }
    (kept, skipped)
}

fn one_random(mut captions: Vec<(usize, &str)>, seed: u64, index: usize) -> Vec<(usize, &str)> {
    if captions.is_empty() {
        return captions;
    }
    let k = SplitMix64::for_item(seed, CHOICE_STREAM, index as u64).below(captions.len());
    vec![captions.swap_remove(k)]
}

fn sample(
    image_id: &str,
    image: &Path,
    caption_index: usize,
    caption: &str,
    seed: u64,
    index: usize,
) -> Conversation {
    let stream = PROMPT_STREAM + caption_index as u64;
    let before = SplitMix64::for_item(seed, stream, index as u64).coin();
    let prompt = if before {
        format!("{IMAGE_PLACEHOLDER}\n{AIC_PROMPT}")
    } else {
        format!("{AIC_PROMPT}\n{IMAGE_PLACEHOLDER}")
    };
    Conversation {
        id: format!("{image_id}#{caption_index}"),
        image: Some(image.to_path_buf()),
        turns: vec![Turn::user(prompt), Turn::assistant(caption)],
    }
}
