//! The remote messages between nodes, their process-group names, and their conversion
//! to and from the seam's [`Call`] and [`Answer`], with the checks that turn untrusted
//! bytes into typed, bounded values. Encoded with `recd_runtime::protocol::codec`
//! (bincode, versioned envelope, size-checked).
//!
//! One [`Request`] per shard per micro-batch: a feature lookup carries every user of the
//! batch that the shard owns, a search carries every query of the batch.

mod reply;
pub mod write;

use crate::data::Schema;
use crate::features::codec::MAX_RECENT;
use crate::features::shard_of;
use crate::stage::Call;
use crate::types::{Cascade, ModelRef, Profile, ScoreRequest};
use ractor::{BytesConvertable, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use recd_runtime::compute::Priority;
use recd_runtime::placement::ShardKind;
use recd_runtime::RecdError;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use write::WireWrite;

/// Encoded bytes of a [`Request`] or [`Reply`]; passed through ractor_cluster untouched,
/// decoded by recd's codec where it can be answered.
pub struct Frame(pub Vec<u8>);

impl BytesConvertable for Frame {
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// Messages of a node's endpoint (`remote::endpoint`). The variant name is part of the
/// wire: renaming it is a protocol change.
#[derive(RactorClusterMessage)]
pub enum EndpointMessage {
    /// One request, one reply.
    #[rpc]
    Call(Frame, RpcReplyPort<Frame>),
}

/// Most user id bytes a remote lookup accepts.
const MAX_USER_ID: usize = 1024;
/// Most `(query, item)` pairs one search may ask for (keeps the reply under a frame).
const MAX_SEARCH_RESULTS: usize = 500_000;
/// Widest search breadth a peer may ask for.
const MAX_EF: usize = 4096;

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
    /// The sender (node `node`) is draining: route around it from now on.
    Leaving {
        /// The sender's `cluster.node_name`.
        node: String,
    },
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
        /// Queries, the catalogue's `dim` floats each, concatenated.
        queries: Vec<f32>,
        /// Items per query.
        k: u32,
        /// Search breadth.
        ef: u32,
        /// The batch's most urgent lane.
        lane: u8,
        /// Time left until the batch's deadline.
        budget_us: u64,
    },
    /// Scores of each request's candidates.
    Score {
        /// Profile and candidate ids per request.
        requests: Vec<(WireProfile, Vec<u64>)>,
        /// The model to run (`name` or `name@version`).
        model: String,
        /// A cheaper first model and how many of its best the model re-ranks.
        cascade: Option<(String, u32)>,
        /// The batch's most urgent lane.
        lane: u8,
        /// Time left until the batch's deadline.
        budget_us: u64,
    },
    /// Item upserts (embedding, features) and deletes (`None`) for index shard `shard`.
    Items {
        /// Index shard.
        shard: u32,
        /// The changes, in order.
        changes: Vec<write::WireItem>,
        /// Time left until the writer gives up.
        budget_us: u64,
    },
    /// Writes to users owned by feature shard `shard`.
    Write {
        /// Feature shard.
        shard: u32,
        /// The writes, in order.
        ops: Vec<WireWrite>,
        /// Time left until the writer gives up.
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
    /// Answer to `Score`, in request and candidate order, and the `name@version` that
    /// scored.
    Scores(Vec<Vec<f32>>, String),
    /// Answer to `Write`: an outcome code per op, once durable.
    Written(Vec<u8>),
    /// Answer to `Items`: how many changes were applied.
    Applied(u32),
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
    /// `schema.dim` floats.
    pub emb: Vec<f32>,
    /// `schema.feat_dim` floats.
    pub feats: Vec<f32>,
    /// False for the default profile.
    pub known: bool,
    /// Recent items, most recent first.
    pub recent: Vec<u64>,
}

impl From<&Profile> for WireProfile {
    fn from(p: &Profile) -> Self {
        Self {
            emb: p.emb.clone(),
            feats: p.feats.clone(),
            known: p.known,
            recent: p.recent.clone(),
        }
    }
}

impl WireProfile {
    /// The profile, checked against `schema`: sizes, finite values, a bounded ring.
    pub fn into_profile(self, schema: Schema) -> Result<Profile, String> {
        let w = self;
        let (emb, feats) = (w.emb, w.feats);
        if emb.len() != schema.dim || feats.len() != schema.feat_dim {
            return Err(format!(
                "profile of {}/{} floats, the catalogue's are {}/{}",
                emb.len(),
                feats.len(),
                schema.dim,
                schema.feat_dim
            ));
        }
        if !emb.iter().chain(&feats).all(|x| x.is_finite()) {
            return Err("profile has a non-finite value".into());
        }
        if w.recent.len() > MAX_RECENT {
            return Err(format!("profile has {} recent items", w.recent.len()));
        }
        Ok(Profile {
            emb,
            feats,
            known: w.known,
            recent: w.recent,
        })
    }
}

/// What a receiving node checks untrusted requests against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Feature shards in the cluster (a lookup's users must belong to its shard).
    pub feature_shards: usize,
    /// Items in the catalogue (candidate ids must be below).
    pub items: usize,
    /// Longest ring of recent items a write may set.
    pub max_recent: usize,
    /// The catalogue's sizes: profiles, queries and items must have them.
    pub schema: Schema,
}

fn bad(message: impl Into<String>) -> RecdError {
    RecdError::bad_request(message)
}

impl Request {
    /// The wire form of `call` with the batch's priority.
    pub fn from_call(call: &Call, priority: Priority) -> Self {
        let (lane, budget_us) = priority_to_wire(priority);
        match call {
            Call::Lookup {
                shard,
                users,
                fetch,
            } => Request::Lookup {
                shard: *shard as u32,
                users: (users.iter())
                    .map(|(u, age)| (u.to_string(), age.as_millis().min(u32::MAX as u128) as u32))
                    .collect(),
                fetch: *fetch,
                budget_us,
            },
            Call::Search {
                shard,
                queries,
                k,
                ef,
                ..
            } => Request::Search {
                shard: *shard as u32,
                queries: queries.to_vec(),
                k: *k as u32,
                ef: (*ef).min(u32::MAX as usize) as u32,
                lane,
                budget_us,
            },
            Call::Score {
                requests,
                model,
                cascade,
            } => Request::Score {
                requests: (requests.iter())
                    .map(|r| (WireProfile::from(&*r.profile), r.candidates.clone()))
                    .collect(),
                model: model.to_string(),
                cascade: (cascade.as_ref())
                    .map(|c| (c.first.to_string(), c.keep.min(u32::MAX as usize) as u32)),
                lane,
                budget_us,
            },
            Call::Items { shard, changes } => Request::Items {
                shard: *shard as u32,
                changes: (changes.iter())
                    .map(|(id, r)| (*id, r.as_ref().map(|r| (r.emb.to_vec(), r.feats.to_vec()))))
                    .collect(),
                budget_us,
            },
            Call::Write { shard, ops } => Request::Write {
                shard: *shard as u32,
                ops: ops.iter().map(WireWrite::from).collect(),
                budget_us,
            },
        }
    }

    /// The call a peer asked for, checked: shapes, finiteness, bounds, ownership and id
    /// ranges. `None` for `Ping`.
    pub fn into_call(
        self,
        limits: Limits,
        trace: u128,
    ) -> Result<Option<(Call, Priority)>, RecdError> {
        let priority = |lane: u8, budget_us| Priority {
            deadline: deadline_from_wire(budget_us),
            lane: lane.into(),
            trace,
        };
        let call = match self {
            Request::Ping | Request::Leaving { .. } => return Ok(None),
            Request::Lookup {
                shard,
                users,
                fetch,
                budget_us,
            } => {
                let s = shard as usize;
                if users.is_empty() || users.len() > MAX_BATCH {
                    return Err(bad(format!("lookup of {} users", users.len())));
                }
                if let Some((u, _)) = (users.iter())
                    .find(|(u, _)| u.len() > MAX_USER_ID || shard_of(u, limits.feature_shards) != s)
                {
                    let msg = format!("user {:?} is not owned by feature shard {s}", truncate(u));
                    return Err(bad(msg));
                }
                let users = (users.into_iter())
                    .map(|(u, age)| (Arc::from(u), Duration::from_millis(age.into())))
                    .collect();
                let call = Call::Lookup {
                    shard: s,
                    users,
                    fetch,
                };
                (call, priority(0, budget_us))
            }
            Request::Search {
                shard,
                queries,
                k,
                ef,
                lane,
                budget_us,
            } => {
                let dim = limits.schema.dim;
                let n = queries.len() / dim;
                if queries.is_empty() || queries.len() % dim != 0 || n > MAX_BATCH {
                    let msg = format!("{} floats are not 1..={MAX_BATCH} queries", queries.len());
                    return Err(bad(msg));
                }
                if k == 0 || n * k as usize > MAX_SEARCH_RESULTS {
                    return Err(bad(format!("k = {k} for {n} queries")));
                }
                if ef as usize > MAX_EF || n * (k.max(ef) as usize) > MAX_SEARCH_RESULTS {
                    return Err(bad(format!("ef = {ef} for {n} queries")));
                }
                if !queries.iter().all(|x| x.is_finite()) {
                    return Err(bad("a query has a non-finite value"));
                }
                let call = Call::Search {
                    shard: shard as usize,
                    queries: Arc::new(queries),
                    dim,
                    k: k as usize,
                    ef: ef as usize,
                };
                (call, priority(lane, budget_us))
            }
            Request::Score {
                requests,
                model,
                cascade,
                lane,
                budget_us,
            } => {
                let model_ref = |m: &str| {
                    if m.len() > ModelRef::MAX_LEN {
                        return Err(bad("a model name longer than 80 bytes"));
                    }
                    ModelRef::parse(m).map_err(bad)
                };
                let model = model_ref(&model)?;
                let cascade = match cascade {
                    None => None,
                    Some((_, keep)) if keep == 0 || keep as usize > MAX_BATCH => {
                        return Err(bad(format!("a cascade keeping {keep}")))
                    }
                    Some((first, keep)) => Some(Cascade {
                        first: model_ref(&first)?,
                        keep: keep as usize,
                    }),
                };
                if requests.is_empty() || requests.len() > MAX_BATCH {
                    return Err(bad(format!("score of {} requests", requests.len())));
                }
                let mut checked = Vec::with_capacity(requests.len());
                for (profile, candidates) in requests {
                    let profile = Arc::new(profile.into_profile(limits.schema).map_err(bad)?);
                    if candidates.len() > MAX_BATCH
                        || candidates.iter().any(|&id| id as usize >= limits.items)
                    {
                        return Err(bad(
                            "candidate ids must be catalogue items, at most 4096 per request",
                        ));
                    }
                    checked.push(ScoreRequest {
                        profile,
                        candidates,
                    });
                }
                let call = Call::Score {
                    requests: Arc::new(checked),
                    model,
                    cascade,
                };
                (call, priority(lane, budget_us))
            }
            Request::Items {
                shard,
                changes,
                budget_us,
            } => {
                let call = Call::Items {
                    shard: shard as usize,
                    changes: Arc::new(write::checked_items(changes, limits.schema)?),
                };
                (call, priority(0, budget_us))
            }
            Request::Write {
                shard,
                ops,
                budget_us,
            } => {
                let ops = write::checked_ops(shard as usize, ops, limits)?;
                let call = Call::Write {
                    shard: shard as usize,
                    ops: Arc::new(ops),
                };
                (call, priority(0, budget_us))
            }
        };
        Ok(Some(call))
    }
}

fn truncate(s: &str) -> &str {
    let end = (0..=s.len().min(32))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

/// The remote form of a batch's priority: lane and time left (deadlines are instants,
/// which mean nothing on another machine).
fn priority_to_wire(p: Priority) -> (u8, u64) {
    let left = p
        .deadline
        .saturating_duration_since(recd_runtime::clock::now());
    (
        p.lane.min(u8::MAX as usize) as u8,
        left.as_micros().min(u64::MAX as u128) as u64,
    )
}

/// The local deadline of a remote budget (capped: a peer cannot make work immortal).
fn deadline_from_wire(budget_us: u64) -> std::time::Instant {
    recd_runtime::clock::now() + Duration::from_micros(budget_us.min(60_000_000))
}

#[cfg(test)]
mod tests;
