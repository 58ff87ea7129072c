//! The values that cross stages: what a feature shard answers and the ranker consumes
//! ([`Profile`]), what an index shard answers ([`Candidate`]), what the ranker is asked
//! ([`ScoreRequest`]). Stages import these, never each other.

use crate::data::{DIM, FEAT_DIM};
use std::sync::Arc;

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

/// A candidate from a shard: item id and distance (smaller is closer).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Global item id.
    pub id: u64,
    /// Index distance (for inner product: 1 − ⟨q, x⟩ on f32/f16).
    pub distance: f32,
}

/// One request to score: the user's profile and its merged candidates.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    /// The user's profile.
    pub profile: Arc<Profile>,
    /// Candidate item ids.
    pub candidates: Vec<u64>,
}
