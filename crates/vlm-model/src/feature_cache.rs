//! Projected features of recently seen images, so that an image asked about again (a chat
//! that resends its history, several questions about one picture) skips the vision tower.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

/// A least-recently-used cache of image features `[1, tokens_per_image, hidden]`, keyed by
/// the preprocessed pixels.
///
/// The key is two independent 64-bit SipHash digests (random keys per cache) of the pixels'
/// shape and bits: equal pixels always hit, and a client cannot craft a collision without
/// the keys. Features are exact: a hit gives the tensor the miss computed.
#[derive(Debug)]
pub struct ImageFeatureCache<B: Backend> {
    capacity: usize,
    hashers: [RandomState; 2],
    entries: HashMap<[u64; 2], Entry<B>>,
    clock: u64,
    hits: u64,
    misses: u64,
}

#[derive(Debug)]
struct Entry<B: Backend> {
    features: Tensor<B, 3>,
    last_used: u64,
}

impl<B: Backend> ImageFeatureCache<B> {
    /// An empty cache holding at most `capacity` images (0: nothing is kept).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hashers: [RandomState::new(), RandomState::new()],
            entries: HashMap::new(),
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The features of the image whose preprocessed pixels are `pixels` (`shape`
    /// `[channels, height, width]`): the kept ones, or `compute()`'s, kept for next time.
    pub fn get_or_compute<E>(
        &mut self,
        pixels: &[f32],
        shape: [usize; 3],
        compute: impl FnOnce() -> Result<Tensor<B, 3>, E>,
    ) -> Result<Tensor<B, 3>, E> {
        self.clock += 1;
        let key = self.key(pixels, shape);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.last_used = self.clock;
            self.hits += 1;
            return Ok(entry.features.clone());
        }
        self.misses += 1;
        let features = compute()?;
        if self.capacity > 0 {
            if self.entries.len() >= self.capacity {
                self.evict_least_recent();
            }
            let entry = Entry {
                features: features.clone(),
                last_used: self.clock,
            };
            self.entries.insert(key, entry);
        }
        Ok(features)
    }

    /// Lookups answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Lookups that ran the vision tower.
    pub fn misses(&self) -> u64 {
        self.misses
    }

    /// Images kept now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no image is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key(&self, pixels: &[f32], shape: [usize; 3]) -> [u64; 2] {
        self.hashers.each_ref().map(|state| {
            let mut hasher = state.build_hasher();
            shape.hash(&mut hasher);
            for value in pixels {
                hasher.write_u32(value.to_bits());
            }
            hasher.finish()
        })
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| *key);
        if let Some(key) = oldest {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use vlm_testkit::{device, TestBackend as B};

    fn features(value: f32) -> Result<Tensor<B, 3>, Infallible> {
        Ok(Tensor::full([1, 2, 3], value, &device()))
    }

    fn value(features: &Tensor<B, 3>) -> f32 {
        features.to_data().iter::<f32>().next().unwrap_or(f32::NAN)
    }

    #[test]
    fn equal_pixels_hit_and_other_pixels_miss() {
        let mut cache = ImageFeatureCache::<B>::new(4);
        let (a, b) = ([0.5f32; 12], [0.25f32; 12]);
        let first = cache
            .get_or_compute(&a, [3, 2, 2], || features(1.0))
            .unwrap();
        let again = cache
            .get_or_compute(&a, [3, 2, 2], || features(9.0))
            .unwrap();
        assert_eq!((value(&first), value(&again)), (1.0, 1.0));
        let other = cache
            .get_or_compute(&b, [3, 2, 2], || features(2.0))
            .unwrap();
        assert_eq!(value(&other), 2.0);
        // Same values, another shape: another image.
        let reshaped = cache
            .get_or_compute(&a, [3, 4, 1], || features(3.0))
            .unwrap();
        assert_eq!(value(&reshaped), 3.0);
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (1, 3, 3));
    }

    #[test]
    fn the_least_recently_used_image_leaves_first() {
        let mut cache = ImageFeatureCache::<B>::new(2);
        let images = [[1.0f32; 3], [2.0; 3], [3.0; 3]];
        let shape = [3, 1, 1];
        cache
            .get_or_compute(&images[0], shape, || features(1.0))
            .unwrap();
        cache
            .get_or_compute(&images[1], shape, || features(2.0))
            .unwrap();
        // Use the first again, so the second is the least recent when the third arrives.
        cache
            .get_or_compute(&images[0], shape, || features(0.0))
            .unwrap();
        cache
            .get_or_compute(&images[2], shape, || features(3.0))
            .unwrap();
        assert_eq!(cache.len(), 2);
        let first = cache
            .get_or_compute(&images[0], shape, || features(-1.0))
            .unwrap();
        assert_eq!(value(&first), 1.0, "the recently used image stays");
        let second = cache
            .get_or_compute(&images[1], shape, || features(-2.0))
            .unwrap();
        assert_eq!(
            value(&second),
            -2.0,
            "the least recently used image was evicted"
        );
    }

    #[test]
    fn capacity_zero_keeps_nothing() {
        let mut cache = ImageFeatureCache::<B>::new(0);
        let pixels = [1.0f32; 3];
        cache
            .get_or_compute(&pixels, [3, 1, 1], || features(1.0))
            .unwrap();
        let again = cache
            .get_or_compute(&pixels, [3, 1, 1], || features(2.0))
            .unwrap();
        assert_eq!(value(&again), 2.0);
        assert_eq!((cache.hits(), cache.misses(), cache.len()), (0, 2, 0));
    }
}
