//! The remote messages between nodes, their process-group names, and the checks that
//! turn untrusted bytes into typed, bounded values. Encoded with
//! `recd_runtime::protocol::codec` (bincode, versioned envelope, size-checked).
//!
//! One [`Request`] per shard per micro-batch: a feature lookup carries every user of the
//! batch that the shard owns, a search carries every query of the batch.

use crate::candidates::index::Candidate;
use crate::data::{DIM, FEAT_DIM};
use crate::features::profile::Profile;
use recd_runtime::compute::Priority;
use recd_runtime::placement::ShardKind;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Most queries, users or scored requests one remote call may carry.
pub const MAX_BATCH: usize = 4096;

/// Group every node's endpoint joins (the heartbeat pings its members).
pub const ENDPOINT_GROUP: &str = "recd.endpoint";
/// Group of the endpoints of nodes that run rankers.
pub const RANKER_GROUP: &str = "recd.ranker";

/// Group of the endpoints that serve shard `s` of `kind`.
pub fn shard_group(kind: ShardKind, s: usize) -> String {
    format!("recd.{}.{s}", kind.as_str())
}

/// A call to another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Heartbeat.
    Ping,
    /// Profiles of users owned by feature shard `shard`.
    Lookup {
        /// Feature shard.
        shard: u32,
        /// Users, each with the oldest cached profile (ms) its lane accepts.
        users: Vec<(String, u32)>,
        /// Whether a miss may be fetched from the source.
        fetch: bool,
        /// Time left until the batch's deadline.
        budget_us: u64,
    },
    /// Nearest items of each query in index shard `shard`.
    Search {
        /// Index shard.
        shard: u32,
        /// Queries, `DIM` floats each, concatenated.
        queries: Vec<f32>,
        /// Items per query.
        k: u32,
        /// The batch's most urgent lane.
        lane: u8,
        /// Time left until the batch's deadline.
        budget_us: u64,
    },
    /// Scores of each request's candidates.
    Score {
        /// Profile and candidate ids per request.
        requests: Vec<(WireProfile, Vec<u64>)>,
        /// The batch's most urgent lane.
        lane: u8,
        /// Time left until the batch's deadline.
        budget_us: u64,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    /// Answer to `Ping`.
    Pong,
    /// Answer to `Lookup`, in user order.
    Profiles(Vec<Option<WireProfile>>),
    /// Answer to `Search`: `(id, distance)` lists in query order.
    Candidates(Vec<Vec<(u64, f32)>>),
    /// Answer to `Score`, in request and candidate order.
    Scores(Vec<Vec<f32>>),
    /// The call failed; `code` is one of recd's error codes.
    Error {
        /// Error code (`bad_request`, `overloaded`, `unavailable`, `timeout`).
        code: String,
        /// What went wrong.
        message: String,
    },
}

impl Reply {
    /// An error reply.
    pub fn error(code: &str, message: impl Into<String>) -> Self {
        Self::Error {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// A profile on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireProfile {
    /// `DIM` floats.
    pub emb: Vec<f32>,
    /// `FEAT_DIM` floats.
    pub feats: Vec<f32>,
    /// False for the default profile.
    pub known: bool,
}

impl From<&Profile> for WireProfile {
    fn from(p: &Profile) -> Self {
        Self {
            emb: p.emb.to_vec(),
            feats: p.feats.to_vec(),
            known: p.known,
        }
    }
}

impl TryFrom<WireProfile> for Profile {
    type Error = String;
    fn try_from(w: WireProfile) -> Result<Self, String> {
        let emb: [f32; DIM] = w
            .emb
            .try_into()
            .map_err(|v: Vec<f32>| format!("profile embedding has {} floats", v.len()))?;
        let feats: [f32; FEAT_DIM] = w
            .feats
            .try_into()
            .map_err(|v: Vec<f32>| format!("profile features have {} floats", v.len()))?;
        if !emb.iter().chain(&feats).all(|x| x.is_finite()) {
            return Err("profile has a non-finite value".into());
        }
        Ok(Profile {
            emb,
            feats,
            known: w.known,
        })
    }
}

/// Candidates in wire form.
pub fn candidates_to_wire(lists: &[Vec<Candidate>]) -> Vec<Vec<(u64, f32)>> {
    lists
        .iter()
        .map(|l| l.iter().map(|c| (c.id, c.distance)).collect())
        .collect()
}

/// Candidates from wire form.
pub fn candidates_from_wire(lists: Vec<Vec<(u64, f32)>>) -> Vec<Vec<Candidate>> {
    lists
        .into_iter()
        .map(|l| {
            l.into_iter()
                .map(|(id, distance)| Candidate { id, distance })
                .collect()
        })
        .collect()
}

/// The remote form of a batch's priority: lane and time left (deadlines are instants,
/// which mean nothing on another machine).
pub fn priority_to_wire(p: Priority) -> (u8, u64) {
    let left = p
        .deadline
        .saturating_duration_since(recd_runtime::clock::now());
    (
        p.lane.min(u8::MAX as usize) as u8,
        left.as_micros().min(u64::MAX as u128) as u64,
    )
}

/// The local deadline of a remote budget (capped: a peer cannot make work immortal).
pub fn deadline_from_wire(budget_us: u64) -> std::time::Instant {
    recd_runtime::clock::now() + Duration::from_micros(budget_us.min(60_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use recd_runtime::protocol::codec::{decode, encode};

    #[test]
    fn requests_round_trip_and_garbage_is_an_error() {
        let r = Request::Search {
            shard: 3,
            queries: vec![0.5; DIM * 2],
            k: 100,
            lane: 1,
            budget_us: 40_000,
        };
        let bytes = encode(&r).unwrap();
        assert_eq!(decode::<Request>(&bytes).unwrap(), r);
        assert!(decode::<Request>(&bytes[..bytes.len() - 3]).is_err());
        assert!(decode::<Request>(b"\x01\x00\xff\xff\xff\xff").is_err());
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 99;
        assert!(decode::<Request>(&wrong_version).is_err());
    }

    #[test]
    fn a_profile_with_the_wrong_shape_is_refused() {
        let ok = WireProfile {
            emb: vec![0.1; DIM],
            feats: vec![0.2; FEAT_DIM],
            known: true,
        };
        assert!(Profile::try_from(ok.clone()).is_ok());
        let short = WireProfile {
            emb: vec![0.1; DIM - 1],
            ..ok.clone()
        };
        assert!(Profile::try_from(short).is_err());
        let nan = WireProfile {
            feats: vec![f32::NAN; FEAT_DIM],
            ..ok
        };
        assert!(Profile::try_from(nan).is_err());
    }
}
