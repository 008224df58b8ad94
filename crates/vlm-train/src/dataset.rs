//! [`TrainData`] over a `vlm-data` [`Dataset`]: the streaming manifest loader (parallel
//! decoding, prefetch, skipped records) with its resume positions.

use burn::tensor::backend::Backend;
use vlm_data::{Batches, Dataset, Position};
use vlm_model::{VlmBatch, IGNORE_INDEX};

use crate::{DataPosition, TrainBatch, TrainData, TrainError};

/// The batches of a manifest [`Dataset`], epoch after epoch, as the trainer consumes them.
///
/// Positions are the dataset's own (records of the epoch's shuffled order consumed), so a
/// resumed run reads exactly the records the interrupted one would have read next. Records
/// the dataset skips (missing image, no placeholder, ...) are reported on stderr with their
/// manifest line and counted.
pub struct DatasetSource {
    dataset: Dataset,
    stream: Option<Batches>,
    position: DataPosition,
    skipped: usize,
}

impl DatasetSource {
    /// Serves `dataset` from the start of epoch 0.
    pub fn new(dataset: Dataset) -> Self {
        Self {
            dataset,
            stream: None,
            position: DataPosition::default(),
            skipped: 0,
        }
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// Records skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    fn open(&mut self, position: DataPosition) -> Result<&mut Batches, TrainError> {
        let from = Position {
            epoch: position.epoch,
            index: position.index,
        };
        let stream = self
            .dataset
            .resume(from)
            .map_err(|e| TrainError::Data(e.to_string()))?;
        self.position = position;
        Ok(self.stream.insert(stream))
    }
}

impl<B: Backend> TrainData<B> for DatasetSource {
    fn batches_per_epoch(&self) -> usize {
        let options = self.dataset.options();
        let batch = options.batch_size.max(1);
        if options.drop_last {
            self.dataset.len() / batch
        } else {
            self.dataset.len().div_ceil(batch)
        }
    }

    fn seek(&mut self, position: DataPosition) -> Result<(), TrainError> {
        self.open(position).map(drop)
    }

    fn next_batch(&mut self, device: &B::Device) -> Result<Option<TrainBatch<B>>, TrainError> {
        let position = self.position;
        let stream = match self.stream.as_mut() {
            Some(stream) => stream,
            None => self.open(position)?,
        };
        let loaded = match stream.next() {
            None => return Ok(None),
            Some(Err(e)) => return Err(TrainError::Data(e.to_string())),
            Some(Ok(loaded)) => loaded,
        };
        for skipped in &loaded.skipped {
            eprintln!("skipped manifest line {}: {}", skipped.line, skipped.record);
        }
        self.skipped += loaded.skipped.len();
        self.position = DataPosition {
            epoch: loaded.resume.epoch,
            index: loaded.resume.index,
        };
        let batch = &loaded.batch;
        let seq = batch.seq_len.max(1);
        let tensors = batch.to_tensors::<B>(device);
        Ok(Some(TrainBatch {
            inputs: VlmBatch {
                input_ids: tensors.input_ids,
                attention_mask: Some(tensors.attention_mask),
                pixel_values: tensors.pixel_values,
            },
            labels: tensors.labels,
            samples: batch.batch_size,
            images: batch.n_images(),
            tokens: batch.attention_mask.iter().filter(|&&m| m != 0).count(),
            supervised_tokens: batch
                .labels
                .iter()
                .enumerate()
                .filter(|(i, &label)| i % seq != 0 && label != IGNORE_INDEX)
                .count(),
        }))
    }

    fn position(&self) -> DataPosition {
        self.position
    }
}
