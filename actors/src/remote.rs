//! recd across nodes: the wire messages, the endpoint that serves other nodes' calls,
//! the router that picks a replica for every shard call, and the heartbeat.
//!
//! ```text
//! PipelineWorker ─► Router ─┬─► local shard actor (typed call, no encoding)   local first
//!                           └─► pg "recd.index.3" ─► Endpoint@peer ─► its shard actor
//!                                (up, under the in-flight cap, least loaded; hedged
//!                                 to a second replica after the kind's p95)
//! Heartbeat ─► every Endpoint in "recd.endpoint": Ping with a deadline ─► Peers
//! ```
//!
//! - [`wire`]: requests/replies, group names, checks on untrusted values.
//! - [`endpoint`]: the actor other nodes call; joins the groups of what this node holds.
//! - [`router`]: replica choice, timeouts, hedging, failover.
//! - [`heartbeat`]: marks hung or partitioned peers down within the heartbeat timeout.

pub mod endpoint;
pub mod heartbeat;
pub mod router;
pub mod wire;

use ractor::ActorRef;
use recd_runtime::pool::PoolSlots;
use std::sync::Arc;

/// The shards of one kind this node holds: pool slot `i` serves shard `held[i]`.
pub struct LocalShards<M> {
    /// The pool's slots.
    pub slots: Arc<PoolSlots<M>>,
    held: Vec<usize>,
    total: usize,
}

impl<M> Clone for LocalShards<M> {
    fn clone(&self) -> Self {
        Self {
            slots: Arc::clone(&self.slots),
            held: self.held.clone(),
            total: self.total,
        }
    }
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
