//! A tiny seeded generator (SplitMix64) for the choices sources and the sample generator make
//! "at random": written out here so that a seed gives the same choices, and the sample data
//! the same bytes, whatever the versions of the crates around it.

/// SplitMix64 (Steele, Lea and Flood 2014): 64 bits of state, passes BigCrush, one
/// multiply-xorshift finaliser per draw.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix64 {
    /// A generator for one item of a stream: the same `(seed, stream, index)` always gives the
    /// same draws, independently of the items before it (so skipping a record elsewhere does
    /// not change the choices made for the next).
    pub fn for_item(seed: u64, stream: u64, index: u64) -> Self {
        let mut mixer = Self { state: seed };
        let a = mixer.next_u64() ^ stream.wrapping_mul(GOLDEN_GAMMA);
        let mut mixer = Self { state: a };
        let b = mixer.next_u64() ^ index;
        Self { state: b }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is below 2^-40 for the small `n` used here).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `true` with probability one half.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// `k` distinct items of `items`, in a random order (a partial Fisher-Yates shuffle).
    pub fn pick<T: Copy>(&mut self, items: &[T], k: usize) -> Vec<T> {
        let mut pool = items.to_vec();
        let k = k.min(pool.len());
        for i in 0..k {
            let j = i + self.below(pool.len() - i);
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_reference_splitmix64_sequence() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut rng = SplitMix64 { state: 0 };
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn items_are_independent_and_reproducible() {
        let a = SplitMix64::for_item(7, 1, 3).next_u64();
        assert_eq!(a, SplitMix64::for_item(7, 1, 3).next_u64());
        assert_ne!(a, SplitMix64::for_item(7, 1, 4).next_u64());
        assert_ne!(a, SplitMix64::for_item(7, 2, 3).next_u64());
        assert_ne!(a, SplitMix64::for_item(8, 1, 3).next_u64());
    }

    #[test]
    fn pick_returns_distinct_items() {
        let mut rng = SplitMix64::for_item(0, 0, 0);
        for _ in 0..100 {
            let mut p = rng.pick(&[1, 2, 3, 4, 5], 3);
            p.sort_unstable();
            p.dedup();
            assert_eq!(p.len(), 3);
        }
    }
}
