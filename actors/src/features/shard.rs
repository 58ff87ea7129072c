//! The `FeatureShard` actor: owns the profile cache for the users of one shard, in
//! front of the shard's durable [`ProfileStore`]; answers batched lookups and applies
//! writes.
//!
//! Lookups: each user is asked with its lane's maximum profile age (the first rung of
//! the degradation ladder); a cached entry that young is served. The misses of a batch
//! are read from the store in one read (when the caller's budget allows a fetch —
//! `fetch: false` answers them `None` and the caller uses the default profile). A user
//! with nothing stored gets the derived profile (docs/workload.md: demo users) or the
//! default one. Cached: stored bytes as stored (decoded per hit, ≈ 200 ns), derived
//! profiles as profiles.
//!
//! Writes: handed to the store's group commit; once durable, the store's thread sends
//! `Committed` back here (in commit order), the cache takes the new values, and only then
//! is the write acknowledged — so a write is visible on this shard the moment it is
//! acknowledged. On a shared store the cache drops what this replica wrote instead (a
//! newer write of another replica may have raced it; the next read goes to the store),
//! and what other replicas write arrives as `Changed` and is dropped too
//! (`recd_write_visible_seconds`: commit to here). A failed job drops its users: a store
//! that timed out may have committed.

use super::cache::TtlCache;
use super::codec::{self, Stored};
use super::profile::ProfileSource;
use super::store::{self, Change, ProfileStore};
use crate::types::{Profile, WriteOp, WriteOutcome};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::WorkerFactory;
use recd_runtime::RecdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the outcome of a write job is answered with.
pub type WriteReply = RpcReplyPort<Result<Vec<WriteOutcome>, RecdError>>;

/// Messages of a feature shard.
pub enum FeatureShardMessage {
    /// Profiles of `users`, in order (`None`: not cached young enough, not fetched).
    Lookup {
        /// Users owned by this shard, each with the oldest cached profile its lane accepts.
        users: Vec<(Arc<str>, Duration)>,
        /// Whether a miss may be fetched from the store (the budget allows it).
        fetch: bool,
        /// The batch's earliest deadline: past it, the lookup is answered empty (the
        /// caller has fallen back already).
        deadline: Instant,
        /// Where the profiles go.
        reply: RpcReplyPort<Vec<Option<Arc<Profile>>>>,
    },
    /// Writes to users of this shard, applied atomically; answered once durable.
    Write {
        /// The writes, in order.
        ops: Vec<WriteOp>,
        /// One outcome per op.
        reply: WriteReply,
    },
    /// From the store's writer: a job is durable (or failed).
    Committed {
        /// What the job did.
        result: Result<store::Committed, RecdError>,
        /// The users its ops named (dropped from the cache if it failed: a store that
        /// timed out may still have committed).
        users: Vec<Arc<str>>,
        /// The writer waiting for it.
        reply: WriteReply,
    },
    /// From a shared store: another replica changed these users.
    Changed(Change),
    /// Chaos drill: the actor panics (only reachable when fault injection is enabled).
    InjectPanic,
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for FeatureShardMessage {}

/// Start arguments (and the pool factory) of the feature shards of a node.
#[derive(Clone)]
pub struct FeatureShardArgs {
    /// Profiles of users with nothing stored.
    pub source: ProfileSource,
    /// The durable store of each held shard, in slot order.
    pub stores: Arc<Vec<Arc<dyn ProfileStore>>>,
    /// Cache TTL.
    pub ttl: Duration,
    /// Cache bound.
    pub max_entries: usize,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
}

/// One slot's arguments.
pub struct ShardArgs {
    common: FeatureShardArgs,
    store: Arc<dyn ProfileStore>,
}

/// A cached entry.
#[derive(Clone)]
enum Cached {
    /// Nothing stored: the derived (or default) profile.
    Derived(Arc<Profile>),
    /// The stored bytes (a profile, or the marker of an erased user).
    Stored(Arc<[u8]>),
}

/// The feature shard actor.
pub struct FeatureShard;

/// Its state: the cache and the store.
pub struct FeatureShardState {
    args: ShardArgs,
    cache: TtlCache<Arc<str>, Cached>,
}

impl FeatureShardState {
    /// The cached entry of `user` whose stored bytes are `stored`.
    fn entry(&self, user: &str, stored: Option<Vec<u8>>) -> Cached {
        match stored {
            Some(b) => Cached::Stored(b.into()),
            None => Cached::Derived(self.args.common.source.profile(user)),
        }
    }

    /// The profile an entry stands for (`None`: undecodable bytes, counted).
    fn resolve(&self, c: &Cached) -> Option<Arc<Profile>> {
        match c {
            Cached::Derived(p) => Some(Arc::clone(p)),
            Cached::Stored(b) => match codec::decode(b, self.args.common.source.schema()) {
                Ok(Stored::Profile(p, _)) => Some(Arc::from(p)),
                Ok(Stored::Erased) => Some(self.args.common.source.default_profile()),
                Err(e) => {
                    self.args.common.metrics.store_errors.inc();
                    tracing::warn!(error = %e, "undecodable stored profile");
                    None
                }
            },
        }
    }

    async fn lookup(
        &mut self,
        users: &[(Arc<str>, Duration)],
        fetch: bool,
        now: Instant,
        deadline: Instant,
    ) -> Vec<Option<Arc<Profile>>> {
        let mut out = vec![None; users.len()];
        let mut misses = Vec::new();
        for (i, (id, max_age)) in users.iter().enumerate() {
            match self.cache.get_younger_than(id, *max_age, now) {
                Some(c) => out[i] = self.resolve(&c),
                None => misses.push(i),
            }
        }
        let metrics = &self.args.common.metrics;
        metrics
            .cache_hits
            .inc_by((users.len() - misses.len()) as u64);
        metrics.cache_misses.inc_by(misses.len() as u64);
        if !fetch || misses.is_empty() {
            return out;
        }
        let ids: Vec<Arc<str>> = misses.iter().map(|&i| Arc::clone(&users[i].0)).collect();
        let left = deadline.saturating_duration_since(now);
        match self.args.store.read(&ids, left).await {
            Ok(values) => {
                for ((&i, id), stored) in misses.iter().zip(ids).zip(values) {
                    let c = self.entry(&id, stored);
                    out[i] = self.resolve(&c);
                    self.cache.insert(id, c, now);
                }
            }
            Err(e) => {
                self.args.common.metrics.store_errors.inc();
                tracing::warn!(error = %e, "feature store read failed");
            }
        }
        out
    }
}

impl Actor for FeatureShard {
    type Msg = FeatureShardMessage;
    type State = FeatureShardState;
    type Arguments = ShardArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: ShardArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cache = TtlCache::new(args.common.ttl, args.common.max_entries);
        // a restarted actor replaces its predecessor as the listener
        args.store.watch(Box::new(move |c| {
            let _ = myself.cast(FeatureShardMessage::Changed(c));
        }));
        Ok(FeatureShardState { args, cache })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FeatureShardMessage::Lookup {
                users,
                fetch,
                deadline,
                reply,
            } => {
                let now = recd_runtime::clock::now();
                if deadline <= now {
                    let _ = reply.send(Vec::new());
                    return Ok(());
                }
                let _ = reply.send(state.lookup(&users, fetch, now, deadline).await);
            }
            FeatureShardMessage::Write { ops, reply } => {
                // the reply comes back through the mailbox, after the cache took the job:
                // cast straight from the store's callback, so mailbox order is commit order
                let users: Vec<Arc<str>> = ops.iter().map(|o| Arc::clone(o.user())).collect();
                let slot = Arc::new(std::sync::Mutex::new(Some(reply)));
                let taken = Arc::clone(&slot);
                let done: store::Done = Box::new(move |result| {
                    if let Some(reply) = taken.lock().ok().and_then(|mut r| r.take()) {
                        let msg = FeatureShardMessage::Committed {
                            result,
                            users,
                            reply,
                        };
                        let _ = myself.cast(msg);
                    }
                });
                if let Err(e) = state.args.store.write(ops, done) {
                    if let Some(reply) = slot.lock().ok().and_then(|mut r| r.take()) {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            FeatureShardMessage::Committed {
                result,
                users,
                reply,
            } => {
                let answer = match result {
                    Ok(done) => {
                        let now = recd_runtime::clock::now();
                        let shared = state.args.store.shared();
                        for (user, bytes) in done.changed {
                            if shared {
                                state.cache.remove(&user);
                            } else {
                                let c = state.entry(&user, bytes);
                                state.cache.insert(user, c, now);
                            }
                        }
                        Ok(done.outcomes)
                    }
                    Err(e) => {
                        users.iter().for_each(|u| state.cache.remove(u));
                        Err(e)
                    }
                };
                let _ = reply.send(answer);
            }
            FeatureShardMessage::Changed(Change::All) => state.cache.clear(),
            FeatureShardMessage::Changed(Change::Users(users, committed_ms)) => {
                for u in &users {
                    state.cache.remove(u);
                }
                let now_ms = recd_runtime::clock::unix_time().as_millis() as u64;
                let visible = now_ms.saturating_sub(committed_ms) as f64 / 1000.0;
                state
                    .args
                    .common
                    .metrics
                    .write_visible_seconds
                    .observe(visible);
            }
            FeatureShardMessage::InjectPanic => panic!("injected fault in feature shard"),
        }
        Ok(())
    }
}

impl WorkerFactory for FeatureShardArgs {
    type Worker = FeatureShard;
    fn make(&self, slot: usize) -> (FeatureShard, ShardArgs) {
        let store = Arc::clone(&self.stores[slot]);
        (
            FeatureShard,
            ShardArgs {
                common: self.clone(),
                store,
            },
        )
    }
}
