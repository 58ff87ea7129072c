//! The `Ranker` actor: scores a micro-batch's candidates in one pass of the model the
//! call names (its version taken from `repo::Models` when the job starts) on the
//! compute pool, and replies from the compute thread (its mailbox never waits behind
//! scoring).

use super::model::ScoreInput;
use super::repo::Models;
use crate::items::Items;
use crate::types::{ModelRef, ScoreRequest};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use recd_runtime::compute::{ComputePool, Priority};
use recd_runtime::pool::WorkerFactory;
use recd_runtime::RecdError;
use std::sync::Arc;

/// Reply: one score list per request, in candidate order, and the `name@version` that
/// scored.
pub type ScoreReply = Result<(Vec<Vec<f32>>, Arc<str>), RecdError>;

/// Messages of a ranker.
pub enum RankerMessage {
    /// Score all requests of a micro-batch.
    Score {
        /// The batch's requests.
        requests: Arc<Vec<ScoreRequest>>,
        /// The model to run.
        model: ModelRef,
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
                priority,
                reply,
            } => {
                let (models, items) = (Arc::clone(&state.models), Arc::clone(&state.items));
                let job = move |reply: RpcReplyPort<ScoreReply>| {
                    let _ = reply.send(score(&models, &items, &model, &requests));
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

/// Runs one scoring call with the version `model` names now (a swap during the call
/// changes only later calls); counts rows and time by `name@version`.
fn score(
    models: &Models,
    items: &Items,
    model: &ModelRef,
    requests: &[ScoreRequest],
) -> ScoreReply {
    let m = models.get(model)?;
    let t = std::time::Instant::now();
    let inputs: Vec<ScoreInput<'_>> = requests
        .iter()
        .map(|r| ScoreInput {
            profile: &r.profile,
            candidates: &r.candidates,
        })
        .collect();
    let scores =
        (m.score_batch(items, &inputs)).map_err(|e| RecdError::internal(format!("{e:#}")))?;
    let metrics = models.metrics();
    let rows: usize = inputs.iter().map(|i| i.candidates.len()).sum();
    metrics
        .model_rows
        .with_label_values(&[m.label()])
        .inc_by(rows as u64);
    (metrics.model_score_seconds.with_label_values(&[m.label()]))
        .observe(t.elapsed().as_secs_f64());
    Ok((scores, Arc::clone(m.label())))
}

impl WorkerFactory for RankerArgs {
    type Worker = Ranker;
    fn make(&self, _slot: usize) -> (Ranker, RankerArgs) {
        (Ranker, self.clone())
    }
}
