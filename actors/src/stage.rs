//! The seam of every call that crosses a stage: one [`Call`] enum, one [`Answer`] enum,
//! one [`Stage`] trait with two implementations.
//!
//! ```text
//! pipeline ─► remote::router::Router ── picks replicas, hedges, fails over ──┐
//!                                                                            ▼
//!                         Stage::call(&Call, Priority, timeout) -> Result<Answer, RecdError>
//!                          ├─ local::LocalStages   this node's shard pools, typed actor calls
//!                          └─ remote::peer::PeerStage   a peer's endpoint, the wire format
//!                                                        (remote::endpoint decodes, calls its
//!                                                         node's LocalStages, encodes)
//! ```
//!
//! A new stage operation is a `Call` variant (with its arms in `Call::target` and
//! `Call::fits`), its `Answer`, one arm in `LocalStages` and its wire form in
//! `remote::wire` (the endpoint's kind label included); the router, the replicas and the
//! peer stage need no change.

pub mod local;

use crate::types::{
    Candidate, Cascade, ItemChanges, ModelRef, Profile, ScoreRequest, WriteOp, WriteOutcome,
};
use futures_util::future::BoxFuture;
use recd_runtime::compute::Priority;
use recd_runtime::{ErrorCode, RecdError};
use std::sync::Arc;
use std::time::Duration;

/// Where a call goes: a shard of a kind, or any ranker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// Feature shard `s`.
    Features(usize),
    /// Index shard `s`.
    Index(usize),
    /// Any ranker.
    Ranker,
}

impl Target {
    /// Kinds of target, for per-kind state (`[T; Target::KINDS]`).
    pub const KINDS: usize = 3;

    /// 0, 1, 2 for features, index, ranker.
    pub fn kind(self) -> usize {
        match self {
            Target::Features(_) => 0,
            Target::Index(_) => 1,
            Target::Ranker => 2,
        }
    }

    /// The kind as a metric label.
    pub fn label(self) -> &'static str {
        ["features", "index", "ranker"][self.kind()]
    }
}

/// A stage operation, in its in-memory form (local calls copy nothing large).
#[derive(Debug, Clone)]
pub enum Call {
    /// Profiles of users owned by feature shard `shard`.
    Lookup {
        /// Feature shard.
        shard: usize,
        /// Users, each with the oldest cached profile its lane accepts.
        users: Vec<(Arc<str>, Duration)>,
        /// Whether a miss may be fetched from the source (the budget allows it).
        fetch: bool,
    },
    /// The `k` nearest items of each query in index shard `shard`.
    Search {
        /// Index shard.
        shard: usize,
        /// Queries, `dim` floats each, concatenated.
        queries: Arc<Vec<f32>>,
        /// Floats per query (the catalogue's embedding size).
        dim: usize,
        /// Items per query.
        k: usize,
        /// Search breadth (at least `k`; a variant may widen it).
        ef: usize,
    },
    /// Scores of each request's candidates.
    Score {
        /// Profile and candidates per request.
        requests: Arc<Vec<ScoreRequest>>,
        /// The model to run.
        model: ModelRef,
        /// Through a cheaper first model, when set.
        cascade: Option<Cascade>,
    },
    /// Item upserts (`Some`) and deletes (`None`) for index shard `shard` (items
    /// `id % shards`), after the node made them durable.
    Items {
        /// Index shard.
        shard: usize,
        /// The changes, in order.
        changes: ItemChanges,
    },
    /// Writes to users owned by feature shard `shard`: applied atomically, answered once
    /// durable (a retry is safe: events carry ids, upserts and deletes are idempotent).
    Write {
        /// Feature shard.
        shard: usize,
        /// The writes, in order.
        ops: Arc<Vec<WriteOp>>,
    },
}

/// The answer to a [`Call`].
#[derive(Debug, Clone)]
pub enum Answer {
    /// To `Lookup`, in user order (`None`: not cached young enough and not fetched).
    Profiles(Vec<Option<Arc<Profile>>>),
    /// To `Search`, one list per query.
    Candidates(Vec<Vec<Candidate>>),
    /// To `Score`, in request and candidate order, with the `name@version` that ran.
    Scores {
        /// The scores.
        scores: Vec<Vec<f32>>,
        /// What scored them.
        model: Arc<str>,
    },
    /// To `Write`, one outcome per op.
    Written(Vec<WriteOutcome>),
    /// To `Items`, how many changes the shard applied.
    Applied(usize),
}

impl Call {
    /// Whether the call changes state. A write is never hedged, and goes to another
    /// replica only after a refusal that proves nothing ran ([`retry_write_on`]): a late
    /// duplicate of an acknowledged write could otherwise undo a newer one.
    pub fn is_write(&self) -> bool {
        matches!(self, Call::Write { .. } | Call::Items { .. })
    }

    /// Where the call goes.
    pub fn target(&self) -> Target {
        match self {
            Call::Lookup { shard, .. } | Call::Write { shard, .. } => Target::Features(*shard),
            Call::Search { shard, .. } | Call::Items { shard, .. } => Target::Index(*shard),
            Call::Score { .. } => Target::Ranker,
        }
    }

    /// Whether `answer` is an answer to this call: the right variant and one entry per
    /// user, query, request and candidate asked. A replica that answers otherwise failed.
    pub fn fits(&self, answer: &Answer) -> bool {
        match (self, answer) {
            (Call::Lookup { users, .. }, Answer::Profiles(p)) => p.len() == users.len(),
            (Call::Search { queries, dim, .. }, Answer::Candidates(c)) => {
                c.len() * dim == queries.len()
            }
            (Call::Score { requests, .. }, Answer::Scores { scores: s, .. }) => {
                s.len() == requests.len()
                    && s.iter()
                        .zip(requests.iter())
                        .all(|(s, r)| s.len() == r.candidates.len())
            }
            (Call::Write { ops, .. }, Answer::Written(o)) => o.len() == ops.len(),
            (Call::Items { changes, .. }, Answer::Applied(n)) => *n == changes.len(),
            _ => false,
        }
    }
}

/// Whether another replica may succeed where this error came back: everything but a
/// refusal of the call itself (a bad request, or an operation no replica is set up for,
/// fails the same way everywhere).
pub fn is_transient(e: &RecdError) -> bool {
    !matches!(e.code, ErrorCode::BadRequest | ErrorCode::NotImplemented)
}

/// Whether a write that failed with `e` may go to another replica: only when it was
/// refused before anything was queued (a full write queue, or the shard is not held or
/// not live there). A timeout or a closed channel may have committed.
pub fn retry_write_on(e: &RecdError) -> bool {
    e.code == ErrorCode::Overloaded || e.message.ends_with(NOT_HERE)
}

/// How a refusal of a call for a shard this node does not hold (or not live) ends.
pub const NOT_HERE: &str = "is not held or not live here";

/// One replica's way to run a [`Call`]: this node's actors or a peer's endpoint.
pub trait Stage: Send + Sync {
    /// Runs `call` with the batch's `priority`, giving up after `timeout`.
    fn call<'a>(
        &'a self,
        call: &'a Call,
        priority: Priority,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, RecdError>>;
}
