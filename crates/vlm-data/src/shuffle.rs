//! The deterministic record order of an epoch.
//!
//! A training run must be reproducible and resumable, so the order depends only on
//! `(seed, epoch)` and on nothing version-dependent: the generator is SplitMix64, written out
//! here, not a library RNG whose stream could change between releases.

/// The order in which an epoch visits records `0..len`: a Fisher-Yates shuffle driven by
/// SplitMix64 seeded from `(seed, epoch)`. The same `(seed, epoch)` always gives the same order;
/// another epoch gives another order.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    for i in (1..len).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// Sebastiano Vigna's SplitMix64 (public domain).
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` by multiply-shift (bias below n / 2^64, negligible for any dataset).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}
