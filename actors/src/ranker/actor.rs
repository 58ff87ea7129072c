//! The `Ranker` actor: scores a micro-batch's candidates in one pass of the model the
//! call names (its version taken from `repo::Models` when the job starts) on the
//! compute pool, and replies from the compute thread (its mailbox never waits behind
//! scoring).

use super::repo::Models;
use super::scoring::{score, Scored};
use crate::items::Items;
use crate::types::{Cascade, ModelRef, ScoreRequest};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use recd_runtime::compute::{ComputePool, Priority};
use recd_runtime::pool::WorkerFactory;
use recd_runtime::RecdError;
use std::sync::Arc;

/// Reply: one score list per request, in candidate order, and what scored.
pub type ScoreReply = Result<Scored, RecdError>;

/// Messages of a ranker.
pub enum RankerMessage {
    /// Score all requests of a micro-batch.
    Score {
        /// The batch's requests.
        requests: Arc<Vec<ScoreRequest>>,
        /// The model to run.
        model: ModelRef,
        /// A cheaper first model and how many of its best the model re-ranks.
        cascade: Option<Cascade>,
        /// Most urgent lane and deadline of the batch (compute queue order).
        priority: Priority,
        /// Where the scores go.
        reply: RpcReplyPort<ScoreReply>,
    },
    /// Chaos drill: the actor panics (only reachable when fault injection is enabled).
    InjectPanic,
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for RankerMessage {}

/// Start arguments (and pool factory) of a ranker.
#[derive(Clone)]
pub struct RankerArgs {
    /// The node's loaded models.
    pub models: Arc<Models>,
    /// Items and their features.
    pub items: Arc<Items>,
    /// Where scoring runs.
    pub compute: ComputePool,
}

/// The ranker actor.
pub struct Ranker;

impl Actor for Ranker {
    type Msg = RankerMessage;
    type State = RankerArgs;
    type Arguments = RankerArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: RankerArgs,
    ) -> Result<RankerArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut RankerArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RankerMessage::Score {
                requests,
                model,
                cascade,
                priority,
                reply,
            } => {
                let (models, items) = (Arc::clone(&state.models), Arc::clone(&state.items));
                let job = move |reply: RpcReplyPort<ScoreReply>| {
                    let scored = score(&models, &items, &model, cascade.as_ref(), &requests);
                    let _ = reply.send(scored);
                };
                if let Err((e, reply)) = state.compute.try_run(priority, reply, job) {
                    let _ = reply.send(Err(RecdError::overloaded(e.to_string())));
                }
            }
            RankerMessage::InjectPanic => panic!("injected fault in ranker"),
        }
        Ok(())
    }
}

impl WorkerFactory for RankerArgs {
    type Worker = Ranker;
    fn make(&self, _slot: usize) -> (Ranker, RankerArgs) {
        (Ranker, self.clone())
    }
}
