//! [`TrainData`] over a `vlm-data` [`Dataset`]: the streaming manifest loader (parallel
//! decoding, prefetch, skipped records) with its resume positions.

use std::collections::BTreeSet;

use burn::tensor::backend::Backend;
use vlm_data::{Batch, Batches, Dataset, Position};

use crate::{Shard, TrainBatch, TrainData, TrainError};

/// The batches of a manifest [`Dataset`], epoch after epoch, as the trainer consumes them.
///
/// Positions are the dataset's own (records of the epoch's shuffled order consumed), so a
/// resumed run reads exactly the records the interrupted one would have read next. Records
/// the dataset skips (missing image, no placeholder, ...) are reported on stderr with their
/// manifest line and counted, each once however many epochs meet it again.
///
/// Sharded for data-parallel peer `rank` of `world` ([`with_shard`](Self::with_shard)), the
/// dataset's `batch_size` is the global batch: every peer reads it and keeps its [`Shard`]
/// of the rows, so positions stay the same on every peer and for any peer count.
pub struct DatasetSource {
    dataset: Dataset,
    shard: Shard,
    stream: Option<Batches>,
    position: Position,
    /// The manifest lines skipped so far.
    skipped: BTreeSet<usize>,
}

impl DatasetSource {
    /// Serves `dataset` from the start of epoch 0.
    pub fn new(dataset: Dataset) -> Self {
        Self {
            dataset,
            shard: Shard::default(),
            stream: None,
            position: Position::default(),
            skipped: BTreeSet::new(),
        }
    }

    /// Serves peer `rank` of `world`'s rows of every batch (the dataset's batch size is the
    /// global one: `world` times the per-device batch).
    pub fn with_shard(mut self, rank: usize, world: usize) -> Self {
        self.shard = Shard::new(rank, world);
        self
    }

    /// The dataset.
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// Distinct records (manifest lines) skipped so far.
    pub fn skipped(&self) -> usize {
        self.skipped.len()
    }

    fn open(&mut self, position: Position) -> Result<&mut Batches, TrainError> {
        let stream = self
            .dataset
            .resume(position)
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
            self.shard.batches(self.dataset.len(), batch)
        }
    }

    fn seek(&mut self, position: Position) -> Result<(), TrainError> {
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
            if self.skipped.insert(skipped.line) {
                eprintln!("skipped manifest line {}: {}", skipped.line, skipped.record);
            }
        }
        self.position = loaded.resume;
        let Some(rows) = self.shard.part(loaded.batch.batch_size) else {
            return Ok(None);
        };
        let part = shard_rows(&loaded.batch, rows);
        let batch = part.as_ref().unwrap_or(&loaded.batch);
        Ok(Some(TrainBatch::from_batch(batch, device)))
    }

    fn position(&self) -> Position {
        self.position
    }
}

/// Rows `rows` of `batch` (and their images), padding kept; `None` when that is all of it.
fn shard_rows(batch: &Batch, rows: std::ops::Range<usize>) -> Option<Batch> {
    if rows.start == 0 && rows.end == batch.batch_size {
        return None;
    }
    let seq = batch.seq_len;
    let tokens = rows.start * seq..rows.end * seq;
    let image_len = batch.image_shape.map_or(0, |[c, h, w]| c * h * w);
    let images_before = batch.has_image[..rows.start].iter().filter(|&&h| h).count();
    let has_image = batch.has_image[rows.clone()].to_vec();
    let images = has_image.iter().filter(|&&h| h).count();
    let pixels = images_before * image_len..(images_before + images) * image_len;
    Some(Batch {
        ids: batch.ids[rows.clone()].to_vec(),
        batch_size: rows.len(),
        seq_len: seq,
        input_ids: batch.input_ids[tokens.clone()].to_vec(),
        attention_mask: batch.attention_mask[tokens.clone()].to_vec(),
        labels: batch.labels[tokens].to_vec(),
        pixel_values: batch.pixel_values[pixels].to_vec(),
        image_shape: batch.image_shape.filter(|_| images > 0),
        has_image,
    })
}
