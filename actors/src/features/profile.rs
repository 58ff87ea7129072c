//! User profiles derived from the id (WORKLOAD.md §2): the profile source for the
//! synthetic workload and the default profile (seed 0) for unknown users.

use crate::data::{DIM, FEAT_DIM, N_CENTERS};
use std::sync::Arc;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
const USER_NOISE: f64 = 0.15;

/// FNV-1a 64 of the UTF-8 bytes.
pub fn fnv1a64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// True for `u0` … `u9999999` (regex `^u(0|[1-9][0-9]{0,6})$`).
pub fn is_known_user(id: &str) -> bool {
    let Some(digits) = id.strip_prefix('u') else {
        return false;
    };
    let b = digits.as_bytes();
    match b {
        [b'0'] => true,
        [first, rest @ ..] => {
            (b'1'..=b'9').contains(first) && rest.len() <= 6 && rest.iter().all(u8::is_ascii_digit)
        }
        [] => false,
    }
}

/// The splitmix64 stream of WORKLOAD.md: out_k mixes `seed + k·φ` for k = 1, 2, ….
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
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next output as an f64 in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A user's features: what the ranker and the ANN query need.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// L2-normalised user embedding.
    pub emb: [f32; DIM],
    /// Dense user features.
    pub feats: [f32; FEAT_DIM],
    /// False for the default profile of an unknown id.
    pub known: bool,
}

/// Derives profiles from the mixture centres.
#[derive(Clone)]
pub struct ProfileSource {
    centers: Arc<Vec<f32>>,
    default: Arc<Profile>,
}

impl ProfileSource {
    /// A source over `centers` (1000 × 64).
    pub fn new(centers: Arc<Vec<f32>>) -> Self {
        assert_eq!(centers.len(), N_CENTERS * DIM);
        let default = Arc::new(derive(&centers, 0, false));
        Self { centers, default }
    }

    /// The profile of `user_id`: derived for a known id, the default profile otherwise.
    pub fn profile(&self, user_id: &str) -> Arc<Profile> {
        if is_known_user(user_id) {
            Arc::new(derive(&self.centers, fnv1a64(user_id), true))
        } else {
            Arc::clone(&self.default)
        }
    }

    /// The default profile (seed 0), also the fallback when a feature shard is late.
    pub fn default_profile(&self) -> Arc<Profile> {
        Arc::clone(&self.default)
    }
}

fn derive(centers: &[f32], seed: u64, known: bool) -> Profile {
    let mut rng = SplitMix64::new(seed);
    let c = (rng.next_u64() % N_CENTERS as u64) as usize;
    let mut emb = [0f64; DIM];
    for (j, e) in emb.iter_mut().enumerate() {
        *e = centers[c * DIM + j] as f64 + USER_NOISE * (2.0 * rng.next_f64() - 1.0);
    }
    let norm = emb.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut out = Profile {
        emb: [0.0; DIM],
        feats: [0.0; FEAT_DIM],
        known,
    };
    for (o, e) in out.emb.iter_mut().zip(emb) {
        *o = (e / norm) as f32;
    }
    for f in out.feats.iter_mut() {
        *f = (2.0 * rng.next_f64() - 1.0) as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_and_known_ids() {
        assert_eq!(fnv1a64(""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64("a"), 0xaf63dc4c8601ec8c);
        for id in ["u0", "u1", "u42", "u9999999"] {
            assert!(is_known_user(id), "{id}");
        }
        for id in [
            "",
            "u",
            "u00",
            "u007",
            "u10000000",
            "x1",
            "u1a",
            "U1",
            "u-1",
        ] {
            assert!(!is_known_user(id), "{id}");
        }
    }

    #[test]
    fn splitmix_matches_reference_first_output() {
        // splitmix64 seeded with 0: the published first output
        assert_eq!(SplitMix64::new(0).next_u64(), 0xe220a8397b1dcdaf);
    }
}
