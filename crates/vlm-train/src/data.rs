//! What the training loop consumes: micro-batches addressed by epoch and index, so that a
//! resumed run asks for exactly the batches the interrupted one would have seen next.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use vlm_data::{supervised_targets, Batch, Position};
use vlm_model::{read_together, VlmBatch};
use vlm_rng::epoch_order;

use crate::TrainError;

/// One micro-batch: the model's inputs, the labels (`-100` where nothing is learned) and the
/// counts the logs report.
#[derive(Debug, Clone)]
pub struct TrainBatch<B: Backend> {
    /// Token ids, attention mask and pixels.
    pub inputs: VlmBatch<B>,
    /// `[batch, seq]` labels aligned with `inputs.input_ids` (the loss shifts them).
    pub labels: Tensor<B, 2, Int>,
    /// Samples in the batch.
    pub samples: usize,
    /// Images in the batch.
    pub images: usize,
    /// Real (non-padding) tokens in the batch.
    pub tokens: usize,
    /// Tokens the loss learns (labels other than -100 after the shift).
    pub supervised_tokens: usize,
}

impl<B: Backend> TrainBatch<B> {
    /// A collated `vlm-data` batch moved onto `device`, its counts taken from the host data
    /// (nothing is read back).
    pub fn from_batch(batch: &Batch, device: &B::Device) -> Self {
        let tensors = batch.to_tensors::<B>(device);
        Self {
            inputs: VlmBatch {
                input_ids: tensors.input_ids,
                attention_mask: Some(tensors.attention_mask),
                pixel_values: tensors.pixel_values,
            },
            labels: tensors.labels,
            samples: batch.batch_size,
            images: batch.n_images(),
            tokens: batch.attention_mask.iter().filter(|&&m| m != 0).count(),
            supervised_tokens: supervised_targets(&batch.labels, batch.seq_len).count(),
        }
    }

    /// A batch, with its counts read from the tensors (mask and labels in one transfer).
    pub fn new(inputs: VlmBatch<B>, labels: Tensor<B, 2, Int>) -> Self {
        let [samples, seq] = inputs.input_ids.dims();
        let images = inputs.pixel_values.as_ref().map_or(0, |p| p.dims()[0]);
        let read = |tensor: &Tensor<B, 2, Int>| tensor.to_data().iter::<i64>().collect::<Vec<_>>();
        let (mask, host_labels) = match &inputs.attention_mask {
            Some(mask) => read_together(mask, &labels)
                .map_or_else(|| (Some(read(mask)), read(&labels)), |(m, l)| (Some(m), l)),
            None => (None, read(&labels)),
        };
        let tokens = mask.map_or(samples * seq, |mask| {
            mask.iter().filter(|&&m| m != 0).count()
        });
        let supervised_tokens = supervised_targets(&host_labels, seq).count();
        Self {
            inputs,
            labels,
            samples,
            images,
            tokens,
            supervised_tokens,
        }
    }
}

/// A source of micro-batches for [`Trainer::fit`](crate::Trainer::fit): a stream of batches
/// per epoch that can be repositioned.
///
/// Resuming is exact when the source yields, after [`seek`](Self::seek) to a position, the
/// same batches it yielded after that position before: shuffle by seed and epoch, never by
/// anything else.
pub trait TrainData<B: Backend> {
    /// Micro-batches in one epoch, for the schedule of an epoch-based run (an estimate is
    /// fine when the source may skip bad records).
    fn batches_per_epoch(&self) -> usize;

    /// Positions the source so that the next batch is the one after `position`.
    fn seek(&mut self, position: Position) -> Result<(), TrainError>;

    /// The next micro-batch of the current epoch, on `device`; `None` at the end of the
    /// epoch (the trainer then seeks to the start of the next one).
    fn next_batch(&mut self, device: &B::Device) -> Result<Option<TrainBatch<B>>, TrainError>;

    /// Where the source stands: after the last batch returned.
    fn position(&self) -> Position;
}

/// In-memory samples served in a shuffled order per epoch (the [`epoch_order`] of the seed
/// and the epoch, as for every data source), `batch_size` at a time, the last batch of an
/// epoch possibly smaller; `collate` turns a slice of samples into a batch. Positions count
/// samples.
///
/// Sharded for data-parallel peer `rank` of `world` ([`with_shard`](Self::with_shard)), it
/// walks global batches of `world * batch_size` samples and serves the peer's part of each.
pub struct ShuffledData<S, F> {
    samples: Vec<S>,
    batch_size: usize,
    shard: Shard,
    seed: u64,
    collate: F,
    position: Position,
    order: Option<(u64, Vec<usize>)>,
}

impl<S, F> ShuffledData<S, F> {
    /// Batches of `batch_size` (at least 1) of `samples`, shuffled by `seed`.
    pub fn new(samples: Vec<S>, batch_size: usize, seed: u64, collate: F) -> Self {
        Self {
            samples,
            batch_size: batch_size.max(1),
            shard: Shard::default(),
            seed,
            collate,
            position: Position::default(),
            order: None,
        }
    }

    /// The samples.
    pub fn samples(&self) -> &[S] {
        &self.samples
    }

    /// Serves peer `rank`'s shard of global batches of `world * batch_size` samples (see
    /// [`Shard`]); positions still count samples of the epoch's order, so they are the same
    /// on every peer and for any peer count.
    pub fn with_shard(mut self, rank: usize, world: usize) -> Self {
        self.shard = Shard::new(rank, world);
        self
    }
}

/// Peer `rank` of `world`'s part of every global batch: the global batch's samples split in
/// `world` contiguous runs as even as possible, in rank order, so that the peers together
/// see exactly the batch one peer would with the global batch size. A global batch with
/// fewer samples than peers (only the last of an epoch can be) is left out: every peer must
/// take part in every step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// The peer's rank.
    pub rank: usize,
    /// Peers.
    pub world: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self { rank: 0, world: 1 }
    }
}

impl Shard {
    /// Peer `rank` of `world` (at least 1; `rank` below it).
    pub fn new(rank: usize, world: usize) -> Self {
        let world = world.max(1);
        Self {
            rank: rank.min(world - 1),
            world,
        }
    }

    /// Global batches of `global` samples in an epoch of `len` samples.
    pub fn batches(&self, len: usize, global: usize) -> usize {
        len / global + usize::from(len % global >= self.world)
    }

    /// This peer's range within a global batch of `n` samples; `None` when it has fewer
    /// samples than peers.
    pub fn part(&self, n: usize) -> Option<std::ops::Range<usize>> {
        (n >= self.world && n > 0)
            .then(|| self.rank * n / self.world..(self.rank + 1) * n / self.world)
    }
}

impl<B, S, F> TrainData<B> for ShuffledData<S, F>
where
    B: Backend,
    F: FnMut(&[&S], &B::Device) -> Result<TrainBatch<B>, TrainError>,
{
    fn batches_per_epoch(&self) -> usize {
        self.shard
            .batches(self.samples.len(), self.batch_size * self.shard.world)
    }

    fn seek(&mut self, position: Position) -> Result<(), TrainError> {
        if position.index > self.samples.len() {
            return Err(TrainError::Data(format!(
                "cannot resume at sample {} of an epoch of {}",
                position.index,
                self.samples.len()
            )));
        }
        self.position = position;
        Ok(())
    }

    fn next_batch(&mut self, device: &B::Device) -> Result<Option<TrainBatch<B>>, TrainError> {
        let Position { epoch, index } = self.position;
        if index >= self.samples.len() {
            return Ok(None);
        }
        if self.order.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.order = Some((epoch, epoch_order(self.samples.len(), self.seed, epoch)));
        }
        let order = &self.order.as_ref().expect("just set").1;
        let end = (index + self.batch_size * self.shard.world).min(order.len());
        let Some(part) = self.shard.part(end - index) else {
            return Ok(None);
        };
        let picked: Vec<&S> = order[index + part.start..index + part.end]
            .iter()
            .map(|&i| &self.samples[i])
            .collect();
        let batch = (self.collate)(&picked, device)?;
        self.position.index = end;
        Ok(Some(batch))
    }

    fn position(&self) -> Position {
        self.position
    }
}
