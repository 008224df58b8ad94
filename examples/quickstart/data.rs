//! The quickstart's data: the sample dataset's LLaVA files read by `vlm-data`'s source, the
//! extra generated scenes, the held-out questions and the stage-2 batches (collated by
//! `vlm-data`).

use std::collections::HashSet;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vlm::backend::Train;
use vlm::data::source::{read_source, ReadOptions, SourceKind, SourceSpec};
use vlm::data::{collate, Conversation, EncodedSample, Padding, Sample, SampleEncoder};
use vlm::image::{ImageProcessor, PixelValues};
use vlm::model::{Prompt, Question, VlmBatch};
use vlm::sample::sample::{scenes, write_sample_data, SampleConfig, Split};
use vlm::sample::CompactVocab;
use vlm::train::{TrainBatch, TrainError};

use super::pretrain::{place_classes, PLACES};
use super::SIDE;

/// An image's preprocessed values, `[3, SIDE, SIDE]` (shared by the samples that show it).
pub(super) type Pixels = Arc<[f32]>;

/// `llava_{split}.json` of a sample dataset folder, read by `vlm-data`'s LLaVA source (every
/// record kept, or an error), with the pixels of each conversation's image.
pub(super) fn read_split(
    dir: &Path,
    split: Split,
    images: &ImageProcessor,
) -> Result<Vec<(Conversation, Pixels)>, Box<dyn Error>> {
    let spec = SourceSpec {
        name: split.name().into(),
        kind: SourceKind::Llava,
        annotations: dir.join(format!("llava_{}.json", split.name())),
        images: dir.join("images"),
        captions: Default::default(),
        seed: 0,
    };
    let strict = ReadOptions {
        strict: true,
        ..ReadOptions::default()
    };
    let mut conversations = Vec::new();
    read_source(&spec, &strict, &mut conversations)?;
    conversations
        .into_iter()
        .map(|conv| {
            let image = conv.image.as_ref().ok_or("a sample record without image")?;
            let pixels = images.process_path(image)?.data;
            Ok((conv, Pixels::from(pixels)))
        })
        .collect()
}

/// A training scene drawn by the generator: its conversation and pixels, and what is at
/// each place (the labels of the vision tower's pretraining).
pub(super) struct GeneratedScene {
    pub(super) example: (Conversation, Pixels),
    pub(super) places: [i64; PLACES],
}

/// `count` training scenes from the generator with seed 1, written to `OUT/extra`, minus any
/// whose shapes (kinds, colours, positions) equal a held-out scene's.
pub(super) fn extra_scenes(
    count: usize,
    out: &Path,
    images: &ImageProcessor,
) -> Result<Vec<GeneratedScene>, Box<dyn Error>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let config = SampleConfig {
        seed: 1,
        train: count,
        heldout: 0,
        size: SampleConfig::default().size,
    };
    let heldout: HashSet<_> = scenes(&SampleConfig::default(), Split::Heldout)
        .into_iter()
        .map(|s| s.shapes)
        .collect();
    let dir = out.join("extra");
    write_sample_data(&dir, &config)?;
    let drawn = scenes(&config, Split::Train);
    Ok(read_split(&dir, Split::Train, images)?
        .into_iter()
        .zip(&drawn)
        .filter(|(_, scene)| !heldout.contains(&scene.shapes))
        .map(|(example, scene)| GeneratedScene {
            example,
            places: place_classes(scene),
        })
        .collect())
}

/// A question asked in its conversation, with its image's path and pixels.
pub(super) struct Asked {
    pub(super) question: Question,
    pub(super) image: PathBuf,
    pixels: Pixels,
}

impl Asked {
    /// The model's prompt: the Qwen prompt `ids` in compact ids, the pixels (zeros, a flat
    /// grey image after normalisation, with `blank`).
    pub(super) fn prompt(
        &self,
        vocab: &CompactVocab,
        ids: &[u32],
        blank: bool,
    ) -> Result<Prompt, Box<dyn Error>> {
        let data = if blank {
            vec![0.0; self.pixels.len()]
        } else {
            self.pixels.to_vec()
        };
        Ok(Prompt {
            ids: vocab.compact_ids(ids)?,
            pixels: Some(PixelValues {
                data,
                shape: [3, SIDE, SIDE],
            }),
        })
    }
}

/// Every question of the conversations, each asked with the earlier answers given.
pub(super) fn questions_in(conversations: &[(Conversation, Pixels)]) -> Vec<Asked> {
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

/// A training sample: compact ids and labels, and its image's pixels.
pub(super) type TrainSample = (EncodedSample, Pixels);

/// A stage-2 batch, collated by `vlm-data` (right padding, labels masked there).
pub(super) fn train_batch(
    batch: &[&TrainSample],
    pad: u32,
    dev: &burn::tensor::Device<Train>,
) -> Result<TrainBatch<Train>, TrainError> {
    let samples = batch
        .iter()
        .map(|(encoded, pixels)| Sample {
            encoded: encoded.clone(),
            pixel_values: Some(PixelValues {
                data: pixels.to_vec(),
                shape: [3, SIDE, SIDE],
            }),
        })
        .collect();
    let batch =
        collate(samples, pad, Padding::Right).map_err(|e| TrainError::Data(e.to_string()))?;
    let tensors = batch.to_tensors::<Train>(dev);
    let inputs = VlmBatch {
        input_ids: tensors.input_ids,
        attention_mask: Some(tensors.attention_mask),
        pixel_values: tensors.pixel_values,
    };
    Ok(TrainBatch::new(inputs, tensors.labels))
}

/// The Qwen ids of every question's prompt (ChatML, ending with the assistant header).
pub(super) fn encode_prompts(
    encoder: &SampleEncoder,
    questions: &[Asked],
) -> Result<Vec<Vec<u32>>, Box<dyn Error>> {
    questions
        .iter()
        .map(|q| Ok(encoder.encode_prompt(&q.question.prompt)?.input_ids))
        .collect()
}
