//! The deterministic record order of an epoch.
//!
//! A training run must be reproducible and resumable, so the order depends only on
//! `(seed, epoch)`: every data source (in-memory samples, manifest datasets) visits its
//! records in this order, so one seed shuffles the same way whatever the source.

use crate::SplitMix64;

/// Spreads consecutive epochs over the seed space before they are mixed into the seed.
const EPOCH_MULTIPLIER: u64 = 0xA076_1D64_78BD_642F;

/// The order in which epoch `epoch` visits records `0..len`: a Fisher-Yates shuffle driven by
/// [`SplitMix64`] seeded from `seed ^ epoch * EPOCH_MULTIPLIER`. The same `(seed, epoch)` always
/// gives the same order; another epoch gives another order.
pub fn epoch_order(len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ epoch.wrapping_mul(EPOCH_MULTIPLIER));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_a_permutation_fixed_by_seed_and_epoch() {
        let order = epoch_order(1000, 42, 5);
        assert_eq!(order, epoch_order(1000, 42, 5));
        assert_ne!(order, epoch_order(1000, 42, 6));
        assert_ne!(order, epoch_order(1000, 43, 5));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn orders_are_pinned() {
        // The orders `vlm_train::ShuffledData` used before this crate existed: the quickstart's
        // data order (and so its score) depends on them.
        assert_eq!(epoch_order(10, 0, 0), [6, 3, 2, 9, 8, 1, 4, 7, 0, 5]);
        assert_eq!(epoch_order(10, 42, 3), [1, 8, 0, 9, 5, 6, 2, 3, 4, 7]);
    }

    #[test]
    fn short_lists_are_unchanged() {
        assert!(epoch_order(0, 1, 0).is_empty());
        assert_eq!(epoch_order(1, 1, 0), [0]);
    }
}
