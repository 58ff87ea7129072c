//! User profiles derived from the id (docs/workload.md): the profile source for the
//! synthetic workload and the default profile (seed 0) for unknown users.

use crate::data::{DIM, FEAT_DIM, N_CENTERS};
use crate::types::Profile;
use std::sync::Arc;

const USER_NOISE: f64 = 0.15;

pub use recd_runtime::hash::{fnv1a64, SplitMix64};

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
        recent: Vec::new(),
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
}
