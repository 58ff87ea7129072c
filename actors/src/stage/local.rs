//! `LocalStages`: the [`Stage`] of this node — the shard and ranker pools it runs, called
//! with typed actor messages (nothing encoded). The router calls it first when it serves
//! the target; the remote endpoint calls it for peers.

use super::{Answer, Call, Stage, Target};
use crate::candidates::shard::IndexShardMessage;
use crate::features::shard::FeatureShardMessage;
use crate::ranker::actor::RankerMessage;
use futures_util::future::BoxFuture;
use ractor::rpc::CallResult;
use ractor::{ActorRef, MessagingErr, RpcReplyPort};
use recd_runtime::compute::Priority;
use recd_runtime::pool::PoolSlots;
use recd_runtime::RecdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The shards of one kind this node holds: pool slot `i` serves shard `held[i]`.
pub struct LocalShards<M> {
    /// The pool's slots.
    pub slots: Arc<PoolSlots<M>>,
    held: Vec<usize>,
    total: usize,
}

impl<M: ractor::Message> LocalShards<M> {
    /// Slots serving `held` (shard numbers, in slot order) of `total` shards.
    pub fn new(held: Vec<usize>, total: usize) -> Self {
        Self {
            slots: PoolSlots::new(held.len()),
            held,
            total,
        }
    }

    /// The live local actor of shard `s`, if this node holds it.
    pub fn get(&self, s: usize) -> Option<ActorRef<M>> {
        let slot = self.held.iter().position(|&h| h == s)?;
        self.slots.get(slot)
    }

    /// Shard numbers held here, in slot order.
    pub fn held(&self) -> &[usize] {
        &self.held
    }

    /// Shards of this kind in the whole cluster.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// This node's stage actors.
pub struct LocalStages {
    /// Feature shards held here.
    pub features: LocalShards<FeatureShardMessage>,
    /// Index shards held here.
    pub index: LocalShards<IndexShardMessage>,
    /// This node's rankers (no slots without the ranker role).
    pub ranker: Arc<PoolSlots<RankerMessage>>,
    next_ranker: AtomicUsize,
}

impl LocalStages {
    /// The stages over these pools' slots (filled by their supervisors).
    pub fn new(
        features: LocalShards<FeatureShardMessage>,
        index: LocalShards<IndexShardMessage>,
        ranker: Arc<PoolSlots<RankerMessage>>,
    ) -> Self {
        Self {
            features,
            index,
            ranker,
            next_ranker: AtomicUsize::new(0),
        }
    }

    /// Whether a live local actor serves `target` now.
    pub fn serves(&self, target: Target) -> bool {
        match target {
            Target::Features(s) => self.features.get(s).is_some(),
            Target::Index(s) => self.index.get(s).is_some(),
            Target::Ranker => self.ranker.live() > 0,
        }
    }

    /// Whether this node runs rankers at all.
    pub fn runs_rankers(&self) -> bool {
        !self.ranker.is_empty()
    }

    fn ranker(&self) -> Option<ActorRef<RankerMessage>> {
        let hint = self.next_ranker.fetch_add(1, Ordering::Relaxed);
        self.ranker.pick(hint)
    }

    async fn run(
        &self,
        call: &Call,
        priority: Priority,
        timeout: Duration,
    ) -> Result<Answer, RecdError> {
        let t = Some(timeout);
        match call {
            Call::Lookup {
                shard,
                users,
                fetch,
            } => {
                let actor = self
                    .features
                    .get(*shard)
                    .ok_or_else(|| not_here("feature shard", *shard))?;
                let (users, fetch, deadline) = (users.clone(), *fetch, priority.deadline);
                let msg = |reply| FeatureShardMessage::Lookup {
                    users,
                    fetch,
                    deadline,
                    reply,
                };
                settle(actor.call(msg, t).await, "feature shard").map(Answer::Profiles)
            }
            Call::Search {
                shard,
                queries,
                k,
                ef,
                ..
            } => {
                let actor = self
                    .index
                    .get(*shard)
                    .ok_or_else(|| not_here("index shard", *shard))?;
                let (queries, k, ef) = (Arc::clone(queries), *k, *ef);
                let msg = |reply| IndexShardMessage::Search {
                    queries,
                    k,
                    ef,
                    priority,
                    reply,
                };
                settle(actor.call(msg, t).await, "index shard")?.map(Answer::Candidates)
            }
            Call::Score {
                requests,
                model,
                cascade,
            } => {
                let actor = self
                    .ranker()
                    .ok_or_else(|| RecdError::unavailable("no live ranker here"))?;
                let (requests, model) = (Arc::clone(requests), model.clone());
                let cascade = cascade.clone();
                let msg = |reply: RpcReplyPort<_>| RankerMessage::Score {
                    requests,
                    model,
                    cascade,
                    priority,
                    reply,
                };
                let scored = settle(actor.call(msg, t).await, "ranker")?;
                scored.map(|(scores, model)| Answer::Scores { scores, model })
            }
            Call::Items { shard, changes } => {
                let actor = self
                    .index
                    .get(*shard)
                    .ok_or_else(|| not_here("index shard", *shard))?;
                let changes = Arc::clone(changes);
                let msg = |reply| IndexShardMessage::Apply {
                    changes,
                    priority,
                    reply,
                };
                settle(actor.call(msg, t).await, "index shard")?.map(Answer::Applied)
            }
            Call::Write { shard, ops } => {
                let actor = self
                    .features
                    .get(*shard)
                    .ok_or_else(|| not_here("feature shard", *shard))?;
                let ops = ops.to_vec();
                let msg = |reply| FeatureShardMessage::Write { ops, reply };
                settle(actor.call(msg, t).await, "feature shard")?.map(Answer::Written)
            }
        }
    }
}

impl Stage for LocalStages {
    fn call<'a>(
        &'a self,
        call: &'a Call,
        priority: Priority,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, RecdError>> {
        Box::pin(self.run(call, priority, timeout))
    }
}

fn not_here(what: &str, s: usize) -> RecdError {
    RecdError::unavailable(format!("{what} {s} {}", super::NOT_HERE))
}

/// The reply of a local actor call, or why there is none.
fn settle<T, M>(r: Result<CallResult<T>, MessagingErr<M>>, what: &str) -> Result<T, RecdError> {
    match r {
        Ok(CallResult::Success(v)) => Ok(v),
        Ok(CallResult::Timeout) => Err(RecdError::deadline(format!(
            "{what} did not answer in time"
        ))),
        // the actor died or is restarting: another replica may answer
        _ => Err(RecdError::unavailable(format!(
            "{what} stopped before answering"
        ))),
    }
}
