//! The durable truth behind a feature shard's cache: the [`ProfileStore`] trait, and
//! [`apply_ops`] — what a batch of writes does, shared by every backend so they agree.
//!
//! ```text
//! FeatureShard ── read (batched, cache misses) ──► ProfileStore ─┬─ embedded::Embedded (redb, per shard)
//!      │                                                          ├─ redis::Shared (Redis, every replica)
//!      │                                                          └─ NoStore (derived profiles only)
//!      ├─ write(ops, done) ─► the backend's group commit ─► done(Committed) once durable
//!      └─ watch(on_change) ◄─ what other replicas wrote (shared store: pub/sub)
//! ```
//!
//! Values are the bytes of `codec` (untrusted on the way back in). A write job is
//! atomic: every op of it is applied or none is.

pub mod embedded;
pub mod redis;

use super::codec::{self, Stored};
use super::fold;
use super::profile::ProfileSource;
use crate::items::Items;
use crate::types::{Profile, WriteOp, WriteOutcome};
use anyhow::{ensure, Context};
use futures_util::future::BoxFuture;
use recd_runtime::RecdError;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The writes of one job, once durable: an outcome per op, and the new stored value of
/// every user changed (`None`: removed), for the shard's cache.
#[derive(Debug)]
pub struct Committed {
    /// One per op, in order.
    pub outcomes: Vec<WriteOutcome>,
    /// Users changed and their stored bytes now.
    pub changed: Vec<(Arc<str>, Option<Vec<u8>>)>,
}

/// Called once with the job's fate (on the backend's thread: keep it short): a job its
/// own ops could not apply is a bad request; a store that failed, unavailable.
pub type Done = Box<dyn FnOnce(Result<Committed, RecdError>) + Send>;

/// The error of a job whose ops could not be applied (nothing of it was written).
pub fn refused(e: &anyhow::Error) -> RecdError {
    RecdError::bad_request(format!("{e:#}"))
}

/// What another writer of a shared store changed.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// These users, committed at this unix time (ms, the writer's clock).
    Users(Vec<Arc<str>>, u64),
    /// Unknown: notifications may have been missed (drop every cached entry).
    All,
}

/// Told about changes by other writers (on the backend's task: keep it short).
pub type OnChange = Box<dyn Fn(Change) + Send + Sync>;

/// The stored bytes of a batch of users, in order (`None`: nothing stored).
pub type ReadResult = anyhow::Result<Vec<Option<Vec<u8>>>>;

/// A feature shard's durable profiles.
pub trait ProfileStore: Send + Sync {
    /// The stored bytes of each user, in order, within `timeout`.
    fn read<'a>(&'a self, users: &'a [Arc<str>], timeout: Duration) -> BoxFuture<'a, ReadResult>;

    /// Queues `ops` as one atomic job; `done` is called once it is durable (or failed).
    /// Refused at once (overloaded) when the backend's queue is full.
    fn write(&self, ops: Vec<WriteOp>, done: Done) -> Result<(), RecdError>;

    /// Whether other replicas write the same truth: the cache then drops what this
    /// replica wrote instead of keeping it (a newer write elsewhere may have raced it).
    fn shared(&self) -> bool {
        false
    }

    /// Tells `on_change` what other writers change from now on (a shared store has
    /// them; a store owned by one shard replica does not); replaces an earlier listener.
    fn watch(&self, on_change: OnChange) {
        drop(on_change);
    }
}

/// The store of `features.store.backend: none`: nothing stored (every user gets the
/// derived or default profile), writes refused with 501.
pub struct NoStore;

impl ProfileStore for NoStore {
    fn read<'a>(&'a self, users: &'a [Arc<str>], _: Duration) -> BoxFuture<'a, ReadResult> {
        Box::pin(std::future::ready(Ok(vec![None; users.len()])))
    }

    fn write(&self, _: Vec<WriteOp>, _: Done) -> Result<(), RecdError> {
        Err(RecdError::new(
            recd_runtime::ErrorCode::NotImplemented,
            "this cluster has no feature store (features.store.backend: none): writes are off",
        ))
    }
}

/// What applying writes needs besides the stored values.
#[derive(Clone)]
pub struct FoldContext {
    /// Profiles of users with nothing stored (derived demo users, the default).
    pub source: ProfileSource,
    /// Item embeddings events move toward.
    pub items: Arc<Items>,
    /// Length of the ring of recent items.
    pub max_recent: usize,
}

impl FoldContext {
    /// The profile `user` has now, given its stored bytes.
    fn current(&self, user: &str, stored: Option<&[u8]>) -> anyhow::Result<(Profile, u64)> {
        match (stored.map(|b| codec::decode(b, self.source.schema()))).transpose()? {
            Some(Stored::Profile(p, at)) => Ok((*p, at)),
            Some(Stored::Erased) => Ok(((*self.source.default_profile()).clone(), 0)),
            None => Ok(((*self.source.profile(user)).clone(), 0)),
        }
    }
}

/// The changes `ops` make, as one job: reads go through `read` (the backend's view,
/// including earlier jobs of the same commit), event ids through `seen`. Fails — with
/// nothing to write — if any op cannot be applied.
pub fn apply_ops(
    ctx: &FoldContext,
    ops: &[WriteOp],
    now_secs: u64,
    mut read: impl FnMut(&str) -> anyhow::Result<Option<Vec<u8>>>,
    mut seen: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<(Committed, Vec<Arc<str>>)> {
    let mut overlay: HashMap<Arc<str>, Option<Vec<u8>>> = HashMap::new();
    let mut new_events: Vec<Arc<str>> = Vec::new();
    let mut new_set: HashSet<Arc<str>> = HashSet::new();
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        let (user, schema) = (op.user(), ctx.source.schema());
        let stored = match overlay.get(user) {
            Some(v) => v.clone(),
            None => read(user).with_context(|| format!("reading user {user:?}"))?,
        };
        let outcome = match op {
            WriteOp::Upsert {
                emb, feats, recent, ..
            } => {
                ensure!(
                    emb.len() == schema.dim && feats.len() == schema.feat_dim,
                    "upsert of the wrong shape"
                );
                let mut p = Profile {
                    emb: emb.clone(),
                    feats: feats.clone(),
                    known: true,
                    recent: Vec::new(),
                };
                ensure!(
                    crate::data::normalise(&mut p.emb),
                    "upsert of a zero embedding"
                );
                for &r in recent.iter().rev() {
                    fold::push_recent(&mut p.recent, r, ctx.max_recent);
                }
                overlay.insert(Arc::clone(user), Some(codec::encode(&p, now_secs)));
                WriteOutcome::Applied
            }
            WriteOp::Delete { .. } => {
                let held = matches!(
                    (stored.as_deref().map(|b| codec::decode(b, schema))).transpose()?,
                    Some(Stored::Profile(..))
                );
                // a demo user's derived profile must not come back: keep a marker
                let derived = ctx.source.derives(user);
                let after = derived.then(codec::encode_erased);
                let outcome = match held || (derived && stored.is_none()) {
                    true => WriteOutcome::Applied,
                    false => WriteOutcome::NotFound,
                };
                overlay.insert(Arc::clone(user), after);
                outcome
            }
            WriteOp::Event {
                event_id,
                item,
                kind,
                weight,
                ts,
                ..
            } => {
                if new_set.contains(event_id) || seen(event_id)? {
                    outcomes.push(WriteOutcome::Duplicate);
                    continue;
                }
                let (mut p, at) = ctx.current(user, stored.as_deref())?;
                let view = ctx.items.view();
                let Some((item_emb, _)) = view.get(*item) else {
                    anyhow::bail!("unknown item {item}");
                };
                fold::apply_event(&mut p, *item, item_emb, *kind, *weight, ctx.max_recent);
                overlay.insert(Arc::clone(user), Some(codec::encode(&p, at.max(*ts))));
                new_set.insert(Arc::clone(event_id));
                new_events.push(Arc::clone(event_id));
                WriteOutcome::Applied
            }
        };
        outcomes.push(outcome);
    }
    let changed = overlay.into_iter().collect();
    Ok((Committed { outcomes, changed }, new_events))
}

#[cfg(test)]
mod tests;
