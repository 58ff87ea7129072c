//! The `IndexShard` actor: owns one shard's index (any `AnnIndex` backend), answers one
//! batched search per micro-batch and applies item upserts and deletes. The search runs
//! on the compute pool and replies from the compute thread, so the actor's mailbox never
//! waits behind ANN work; a full compute queue is answered
//! at once with `Overloaded`.

use super::ann::AnnIndex;
use crate::types::{Candidate, ItemChanges};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use recd_runtime::compute::{ComputePool, Priority};
use recd_runtime::pool::WorkerFactory;
use recd_runtime::RecdError;
use std::sync::Arc;

/// Reply of a batched search: one candidate list per query.
pub type SearchReply = Result<Vec<Vec<Candidate>>, RecdError>;

/// Messages of an index shard.
pub enum IndexShardMessage {
    /// Search every query (row-major, `DIM` floats each) for its `k` nearest items.
    Search {
        /// Queries of the micro-batch, concatenated.
        queries: Arc<Vec<f32>>,
        /// Items per query.
        k: usize,
        /// Search breadth: the graph walk keeps `max(ef, k, index.expansion_search)`
        /// candidates, answering the best `k`.
        ef: usize,
        /// Most urgent lane and deadline of the batch (compute queue order).
        priority: Priority,
        /// Where the results go.
        reply: RpcReplyPort<SearchReply>,
    },
    /// Item upserts (`Some`) and deletes (`None`) of this shard's items.
    Apply {
        /// The changes, in order.
        changes: ItemChanges,
        /// Deadline (compute queue order).
        priority: Priority,
        /// How many were applied.
        reply: RpcReplyPort<Result<usize, RecdError>>,
    },
    /// Chaos drill: the actor panics (only reachable when fault injection is enabled).
    InjectPanic,
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for IndexShardMessage {}

/// Start arguments (and pool factory) of an index shard.
#[derive(Clone)]
pub struct IndexShardArgs {
    /// The shards' indexes; slot `s` serves `indexes[s]`.
    pub indexes: Arc<Vec<Arc<dyn AnnIndex>>>,
    /// Where searches run.
    pub compute: ComputePool,
}

/// The index shard actor.
pub struct IndexShard;

/// Its state: the index it serves.
pub struct IndexShardState {
    index: Arc<dyn AnnIndex>,
    compute: ComputePool,
}

impl Actor for IndexShard {
    type Msg = IndexShardMessage;
    type State = IndexShardState;
    type Arguments = (Arc<dyn AnnIndex>, ComputePool);

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        (index, compute): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(IndexShardState { index, compute })
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IndexShardMessage::Search {
                queries,
                k,
                ef,
                priority,
                reply,
            } => {
                let index = Arc::clone(&state.index);
                let job = move |reply: RpcReplyPort<SearchReply>| {
                    let _ = reply.send(search_all(&*index, &queries, k, ef));
                };
                if let Err((e, reply)) = state.compute.try_run(priority, reply, job) {
                    let _ = reply.send(Err(RecdError::overloaded(e.to_string())));
                }
            }
            // on the compute pool too: an HNSW insert is CPU work (the index serialises
            // its writers itself)
            IndexShardMessage::Apply {
                changes,
                priority,
                reply,
            } => {
                let index = Arc::clone(&state.index);
                let job = move |reply: RpcReplyPort<Result<usize, RecdError>>| {
                    let r = Arc::clone(&index)
                        .apply_items(&changes)
                        .map(|()| changes.len());
                    let _ = reply.send(r.map_err(|e| RecdError::unavailable(format!("{e:#}"))));
                };
                if let Err((e, reply)) = state.compute.try_run(priority, reply, job) {
                    let _ = reply.send(Err(RecdError::overloaded(e.to_string())));
                }
            }
            IndexShardMessage::InjectPanic => panic!("injected fault in index shard"),
        }
        Ok(())
    }
}

fn search_all(index: &dyn AnnIndex, queries: &[f32], k: usize, ef: usize) -> SearchReply {
    (index.search_batch(queries, k, ef)).map_err(|e| RecdError::unavailable(format!("{e:#}")))
}

impl WorkerFactory for IndexShardArgs {
    type Worker = IndexShard;
    fn make(&self, slot: usize) -> (IndexShard, (Arc<dyn AnnIndex>, ComputePool)) {
        (
            IndexShard,
            (Arc::clone(&self.indexes[slot]), self.compute.clone()),
        )
    }
}
