//! The `FeatureShard` actor: owns the profile cache for the users of one shard and
//! answers batched lookups. Deriving a profile costs ~1 µs, so lookups run inline in
//! the actor (a batch of 64 stays far below the 500 µs budget for async code).
//!
//! First rung of the degradation ladder: each user is asked with its lane's maximum
//! profile age; a cached profile that young is served. Otherwise the profile is fetched
//! from the source, unless the caller's budget does not allow a fetch (`fetch: false`),
//! in which case the answer is `None` and the caller uses the default profile.

use super::cache::TtlCache;
use super::profile::ProfileSource;
use crate::types::Profile;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::WorkerFactory;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages of a feature shard.
pub enum FeatureShardMessage {
    /// Profiles of `users`, in order (`None`: not cached young enough, not fetched).
    Lookup {
        /// Users owned by this shard, each with the oldest cached profile its lane accepts.
        users: Vec<(Arc<str>, Duration)>,
        /// Whether a miss may be fetched from the source (the budget allows it).
        fetch: bool,
        /// The batch's earliest deadline: past it, the lookup is answered empty (the
        /// caller has fallen back already).
        deadline: Instant,
        /// Where the profiles go.
        reply: RpcReplyPort<Vec<Option<Arc<Profile>>>>,
    },
    /// Chaos drill: the actor panics (only reachable when fault injection is enabled).
    InjectPanic,
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for FeatureShardMessage {}

/// Start arguments (and the pool factory) of a feature shard.
#[derive(Clone)]
pub struct FeatureShardArgs {
    /// Where profiles come from on a miss.
    pub source: ProfileSource,
    /// Cache TTL.
    pub ttl: Duration,
    /// Cache bound.
    pub max_entries: usize,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
}

/// The feature shard actor.
pub struct FeatureShard;

/// Its state: the cache.
pub struct FeatureShardState {
    args: FeatureShardArgs,
    cache: TtlCache<Arc<str>, Arc<Profile>>,
}

impl Actor for FeatureShard {
    type Msg = FeatureShardMessage;
    type State = FeatureShardState;
    type Arguments = FeatureShardArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: FeatureShardArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cache = TtlCache::new(args.ttl, args.max_entries);
        Ok(FeatureShardState { args, cache })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
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
                let (mut hits, mut misses) = (0, 0);
                let profiles = users
                    .into_iter()
                    .map(|(id, max_age)| {
                        if let Some(p) = state.cache.get_younger_than(&id, max_age, now) {
                            hits += 1;
                            return Some(p);
                        }
                        misses += 1;
                        fetch.then(|| {
                            let p = state.args.source.profile(&id);
                            state.cache.insert(id, Arc::clone(&p), now);
                            p
                        })
                    })
                    .collect();
                state.args.metrics.cache_hits.inc_by(hits);
                state.args.metrics.cache_misses.inc_by(misses);
                let _ = reply.send(profiles);
            }
            FeatureShardMessage::InjectPanic => panic!("injected fault in feature shard"),
        }
        Ok(())
    }
}

impl WorkerFactory for FeatureShardArgs {
    type Worker = FeatureShard;
    fn make(&self, _slot: usize) -> (FeatureShard, FeatureShardArgs) {
        (FeatureShard, self.clone())
    }
}
