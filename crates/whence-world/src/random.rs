//! The crate's random draws on a ChaCha8 stream: unbiased uniform integers
//! and coin flips (no `rand` dependency).

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use whence_core::hash::{fnv1a64, splitmix64};

/// A random stream, seeded.
pub(crate) struct Stream {
    rng: ChaCha8Rng,
}

impl Stream {
    /// The stream of `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Stream { rng: ChaCha8Rng::seed_from_u64(seed) }
    }

    /// The stream of a seed and a key: a stable hash of both (FNV-1a over the
    /// key, SplitMix64 to mix in the seed), the same on every platform.
    pub(crate) fn keyed(seed: u64, key: &str) -> Self {
        Stream::new(splitmix64(seed ^ splitmix64(fnv1a64(key.as_bytes()))))
    }

    /// A uniform integer in `0..bound` (0 when `bound` is 0), by rejection,
    /// so without modulo bias.
    pub(crate) fn below(&mut self, bound: u32) -> u32 {
        if bound == 0 {
            return 0;
        }
        let span = u64::from(bound);
        // 2^64 mod span values at the top are rejected, leaving a multiple of span.
        let rejected = (u64::MAX % span + 1) % span;
        loop {
            let x = self.rng.next_u64();
            if x <= u64::MAX - rejected {
                return (x % span) as u32;
            }
        }
    }

    /// A uniform integer in `low..=high` (`low` when `high < low`).
    pub(crate) fn inclusive(&mut self, low: u32, high: u32) -> u32 {
        if high <= low {
            return low;
        }
        low + self.below(high - low + 1)
    }

    /// A uniform number in [0, 1) with 53 random bits.
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `probability` (never for NaN or ≤ 0, always for ≥ 1).
    pub(crate) fn chance(&mut self, probability: f64) -> bool {
        self.uniform() < probability
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_reaches_every_value() {
        let mut stream = Stream::new(7);
        let mut seen = [0usize; 9];
        for _ in 0..9000 {
            let value = stream.below(9);
            assert!(value < 9);
            seen[value as usize] += 1;
        }
        assert!(seen.iter().all(|&count| (800..1200).contains(&count)), "{seen:?}");
        assert_eq!(stream.below(0), 0);
        assert_eq!(stream.below(1), 0);
    }

    #[test]
    fn inclusive_covers_both_ends() {
        let mut stream = Stream::new(3);
        let draws: Vec<u32> = (0..2000).map(|_| stream.inclusive(2, 30)).collect();
        assert!(draws.iter().all(|value| (2..=30).contains(value)));
        assert!(draws.contains(&2) && draws.contains(&30));
        assert_eq!(stream.inclusive(5, 5), 5);
        assert_eq!(stream.inclusive(5, 1), 5);
    }

    #[test]
    fn keyed_streams_are_stable_and_differ_by_key() {
        let first: Vec<u32> = (0..4)
            .map({
                let mut stream = Stream::keyed(1, "a");
                move |_| stream.below(1000)
            })
            .collect();
        let again: Vec<u32> = (0..4)
            .map({
                let mut stream = Stream::keyed(1, "a");
                move |_| stream.below(1000)
            })
            .collect();
        let other: Vec<u32> = (0..4)
            .map({
                let mut stream = Stream::keyed(1, "b");
                move |_| stream.below(1000)
            })
            .collect();
        assert_eq!(first, again);
        assert_ne!(first, other);
    }

    #[test]
    fn chance_follows_the_probability() {
        let mut stream = Stream::new(11);
        let hits = (0..10_000).filter(|_| stream.chance(0.3)).count();
        assert!((2800..3200).contains(&hits), "{hits}");
        assert!(!stream.chance(0.0));
        assert!(!stream.chance(f64::NAN));
        assert!(stream.chance(1.0));
    }
}
