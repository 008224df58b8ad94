//! The key/value cache that lets decoding feed one new token per step.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// Keys and values of every layer for the tokens seen so far.
///
/// Create one with [`QwenModel::new_cache`](crate::QwenModel::new_cache), pass it to a prefill
/// forward, then to each one-token decode step: every forward appends its keys and values
/// (after RoPE, before the grouped-query repeat) so the prefix is never recomputed.
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<LayerCache<B>>,
}

/// The cached keys and values of one layer, `[batch, kv_heads, len, head_dim]` each.
#[derive(Debug, Clone)]
pub(crate) struct LayerCache<B: Backend> {
    entries: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
}

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
        self.dims().map_or(0, |[_, _, len, _]| len)
    }

    /// Whether nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Batch size of the cached sequences, if any.
    pub fn batch_size(&self) -> Option<usize> {
        self.dims().map(|[batch, _, _, _]| batch)
    }

    /// Number of layers the cache was made for.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    pub(crate) fn layers_mut(&mut self) -> impl Iterator<Item = &mut LayerCache<B>> {
        self.layers.iter_mut()
    }

    fn dims(&self) -> Option<[usize; 4]> {
        let (keys, _) = self.layers.first()?.entries.as_ref()?;
        Some(keys.dims())
    }
}

impl<B: Backend> LayerCache<B> {
    /// Appends this step's keys and values and returns all of them.
    pub(crate) fn append(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (keys, values) = match self.entries.take() {
            Some((old_keys, old_values)) => (
                Tensor::cat(vec![old_keys, keys], 2),
                Tensor::cat(vec![old_values, values], 2),
            ),
            None => (keys, values),
        };
        self.entries = Some((keys.clone(), values.clone()));
        (keys, values)
    }
}
