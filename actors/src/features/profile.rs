//! User profiles derived from the id (docs/workload.md): the profile source for the
//! synthetic workload and the default profile (seed 0) for unknown users. A catalogue
//! without mixture centres has no demo users; its default profile is the normalised
//! mean of the item embeddings with zero features.

use crate::data::{Catalogue, Schema};
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
    /// `None`: the catalogue has no centres, so no demo users.
    centers: Option<Arc<Vec<f32>>>,
    schema: Schema,
    default: Arc<Profile>,
}

impl ProfileSource {
    /// A source over the catalogue's centres (its item mean when it has none).
    pub fn new(cat: &Catalogue) -> Self {
        let schema = cat.schema;
        if cat.centers.is_empty() {
            let mut mean = vec![0f64; schema.dim];
            for row in 0..cat.len() {
                mean.iter_mut()
                    .zip(cat.item(row))
                    .for_each(|(m, &x)| *m += f64::from(x));
            }
            let default = Arc::new(unit_profile(mean, vec![0.0; schema.feat_dim], false));
            return Self {
                centers: None,
                schema,
                default,
            };
        }
        let centers = Arc::new(cat.centers.clone());
        let default = Arc::new(derive(&centers, schema, 0, false));
        Self {
            centers: Some(centers),
            schema,
            default,
        }
    }

    /// The profile of `user_id`: derived for a known id, the default profile otherwise.
    pub fn profile(&self, user_id: &str) -> Arc<Profile> {
        match &self.centers {
            Some(c) if is_known_user(user_id) => {
                Arc::new(derive(c, self.schema, fnv1a64(user_id), true))
            }
            _ => Arc::clone(&self.default),
        }
    }

    /// The sizes of the profiles it derives.
    pub fn schema(&self) -> Schema {
        self.schema
    }

    /// True if `user_id` has a derived profile of its own (a demo user).
    pub fn derives(&self, user_id: &str) -> bool {
        self.centers.is_some() && is_known_user(user_id)
    }

    /// The default profile (seed 0), also the fallback when a feature shard is late.
    pub fn default_profile(&self) -> Arc<Profile> {
        Arc::clone(&self.default)
    }
}

fn derive(centers: &[f32], schema: Schema, seed: u64, known: bool) -> Profile {
    let dim = schema.dim;
    let mut rng = SplitMix64::new(seed);
    let c = (rng.next_u64() % (centers.len() / dim) as u64) as usize;
    let emb: Vec<f64> = (centers[c * dim..(c + 1) * dim].iter())
        .map(|&x| f64::from(x) + USER_NOISE * (2.0 * rng.next_f64() - 1.0))
        .collect();
    let feats = (0..schema.feat_dim)
        .map(|_| (2.0 * rng.next_f64() - 1.0) as f32)
        .collect();
    unit_profile(emb, feats, known)
}

/// A profile of `emb` scaled to unit length (left as is if it is all zeros).
fn unit_profile(emb: Vec<f64>, feats: Vec<f32>, known: bool) -> Profile {
    let norm = emb.iter().map(|x| x * x).sum::<f64>().sqrt();
    let norm = if norm > 0.0 { norm } else { 1.0 };
    Profile {
        emb: emb.iter().map(|e| (e / norm) as f32).collect(),
        feats,
        known,
        recent: Vec::new(),
    }
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
