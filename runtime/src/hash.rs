//! The hashes recd agrees on everywhere: FNV-1a 64 and the splitmix64 stream of
//! docs/workload.md (profiles, A/B buckets, feature-shard routing, placement, and the load
//! generator's random choices).

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// FNV-1a 64 of the UTF-8 bytes of `s`.
pub fn fnv1a64(s: &str) -> u64 {
    fnv1a64_from(FNV_OFFSET, s.as_bytes())
}

/// FNV-1a 64 continued from `state` over `bytes` (hash several fields in sequence).
pub fn fnv1a64_from(state: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(state, |h, b| (h ^ *b as u64).wrapping_mul(FNV_PRIME))
}

/// The splitmix64 output function: spreads the bits of `z`.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The splitmix64 stream of docs/workload.md: out_k = mix64(seed + k·φ) for k = 1, 2, ….
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A stream seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// The next output as an f64 in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        assert_eq!(fnv1a64(""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64("a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64_from(fnv1a64("a"), b"b"), fnv1a64("ab"));
        // splitmix64 seeded with 0: the published first output
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220a8397b1dcdaf);
    }
}
