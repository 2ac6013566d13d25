//! Small stable hashes: the same value on every platform and every version,
//! for default question ids, reproducible random choices and shard keys.

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The SplitMix64 finaliser: spreads the bits of `x`.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform index in `0..n` from a seed and a key (n > 0).
pub fn seeded_index(seed: u64, key: &str, n: usize) -> usize {
    let mixed = splitmix64(seed ^ splitmix64(fnv1a64(key.as_bytes())));
    ((u128::from(mixed) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn seeded_index_is_in_range_and_spread() {
        let mut seen = [0usize; 4];
        for i in 0..4000 {
            let index = seeded_index(7, &format!("q{i}"), 4);
            seen[index] += 1;
        }
        assert!(seen.iter().all(|&c| c > 900), "{seen:?}");
    }
}
