//! The key/value cache that lets decoding feed one new token per step.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::rows::{row_indices, stack_aligned};
use crate::RowCache;

/// Keys and values of every layer for the tokens seen so far.
///
/// Create one with [`QwenModel::new_cache`](crate::QwenModel::new_cache), pass it to a prefill
/// forward, then to each one-token decode step: every forward appends its keys and values
/// (after RoPE, one entry per key/value head) so the prefix is never recomputed.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

/// The cached keys and values of one layer.
///
/// Stored in buffers `[batch, kv_heads, capacity, head_dim]` of which the first `len`
/// positions are filled: a decode step writes its keys and values in place (the buffers are
/// not shared once the previous step's views are dropped) instead of concatenating, which
/// would copy the whole cache every step. The capacity doubles when full.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache<B: Backend> {
    entries: Option<Buffers<B>>,
}

#[derive(Debug, Clone)]
struct Buffers<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    len: usize,
}

/// Room made past the prompt when a cache is first filled, in positions.
const INITIAL_ROOM: usize = 64;

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model of `num_layers` decoder layers.
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers)
                .map(|_| LayerCache { entries: None })
                .collect(),
        }
    }

    /// Number of cached positions (0 before the first forward).
    pub fn len(&self) -> usize {
        self.first().map_or(0, |buffers| buffers.len)
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size of the cached sequences, if any.
    pub fn batch_size(&self) -> Option<usize> {
        self.first().map(|buffers| buffers.keys.dims()[0])
    }

    /// Number of layers the cache was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut LayerCache<B>> {
        self.layers.iter_mut()
    }

    fn first(&self) -> Option<&Buffers<B>> {
        self.layers.first()?.entries.as_ref()
    }
}

impl<B: Backend> RowCache for KvCache<B> {
    fn join_rows(&mut self, other: Self) {
        for (layer, theirs) in self.layers.iter_mut().zip(other.layers) {
            layer.entries = match (layer.entries.take(), theirs.entries) {
                (Some(mine), Some(theirs)) => Some(mine.joined(theirs)),
                (mine, theirs) => mine.or(theirs),
            };
        }
    }

    fn select_rows(&mut self, rows: &[usize], skip: usize) {
        for layer in &mut self.layers {
            layer.entries = layer.entries.take().map(|buffers| {
                let indices = row_indices(rows, &buffers.keys.device());
                buffers.selected(&indices, skip)
            });
        }
    }
}

impl<B: Backend> LayerCache<B> {
    /// Appends this step's keys and values (`[batch, kv_heads, seq, head_dim]`) and returns
    /// all of them, as views of the buffers.
    pub(crate) fn append(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [_, _, seq, _] = keys.dims();
        let buffers = match self.entries.take() {
            Some(buffers) => buffers.reserve(seq),
            None => Buffers::empty(&keys, seq + INITIAL_ROOM),
        };
        let buffers = buffers.write(keys, values);
        let filled = (
            buffers.filled(&buffers.keys),
            buffers.filled(&buffers.values),
        );
        self.entries = Some(buffers);
        filled
    }
}

impl<B: Backend> Buffers<B> {
    /// Empty buffers shaped like `like` with room for `capacity` positions.
    fn empty(like: &Tensor<B, 4>, capacity: usize) -> Self {
        let [batch, heads, _, dim] = like.dims();
        let device = like.device();
        let zeros = || Tensor::zeros([batch, heads, capacity, dim], (&device, like.dtype()));
        Self {
            keys: zeros(),
            values: zeros(),
            len: 0,
        }
    }

    /// These buffers with room for `more` positions: the same ones if they have it, else
    /// twice as large (or as large as needed) with the filled part copied over.
    fn reserve(self, more: usize) -> Self {
        let [_, _, capacity, _] = self.keys.dims();
        if self.len + more <= capacity {
            return self;
        }
        let grown = Self::empty(&self.keys, (2 * capacity).max(self.len + more));
        Self {
            keys: grown
                .keys
                .slice_assign(Self::span(&self.keys, 0, self.len), self.filled(&self.keys)),
            values: grown.values.slice_assign(
                Self::span(&self.values, 0, self.len),
                self.filled(&self.values),
            ),
            len: self.len,
        }
    }

    /// These rows then `other`'s, right-aligned to the longer length, with room made past it.
    fn joined(self, other: Self) -> Self {
        let len = self.len.max(other.len);
        let stack = |mine, theirs| stack_aligned(mine, theirs, 2, len + INITIAL_ROOM);
        Self {
            keys: stack(self.filled(&self.keys), other.filled(&other.keys)),
            values: stack(self.filled(&self.values), other.filled(&other.values)),
            len,
        }
    }

    /// The rows `rows` without their first `skip` positions (a copy; the next write makes
    /// room).
    fn selected(&self, rows: &Tensor<B, 1, Int>, skip: usize) -> Self {
        let pick = |buffer: &Tensor<B, 4>| {
            self.filled(buffer)
                .select(0, rows.clone())
                .narrow(2, skip, self.len - skip)
        };
        Self {
            keys: pick(&self.keys),
            values: pick(&self.values),
            len: self.len - skip,
        }
    }

    /// Writes `keys` and `values` after the filled positions (room must have been reserved).
    fn write(self, keys: Tensor<B, 4>, values: Tensor<B, 4>) -> Self {
        let [_, _, seq, _] = keys.dims();
        let keys_span = Self::span(&self.keys, self.len, seq);
        let values_span = Self::span(&self.values, self.len, seq);
        Self {
            keys: self.keys.slice_assign(keys_span, keys),
            values: self.values.slice_assign(values_span, values),
            len: self.len + seq,
        }
    }

    /// The filled positions of `buffer`, a view.
    fn filled(&self, buffer: &Tensor<B, 4>) -> Tensor<B, 4> {
        buffer.clone().slice(Self::span(buffer, 0, self.len))
    }

    /// The ranges selecting positions `start..start + len` of every batch row and head.
    fn span(buffer: &Tensor<B, 4>, start: usize, len: usize) -> [std::ops::Range<usize>; 4] {
        let [batch, heads, _, dim] = buffer.dims();
        [0..batch, 0..heads, start..start + len, 0..dim]
    }
}
