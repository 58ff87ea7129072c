//! A request on its way through the stages, and what comes back to the ingress.

use recd_runtime::api::RecommendResponse;
use recd_runtime::lanes::LaneId;
use recd_runtime::RecdError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A validated, admitted request waiting for its answer.
pub struct PendingRequest {
    /// Server-assigned id.
    pub request_id: String,
    /// Its W3C trace id (the batch's remote calls carry the most urgent request's).
    pub trace: u128,
    /// The user.
    pub user_id: Arc<str>,
    /// Items to return.
    pub topk: usize,
    /// Priority lane.
    pub lane: LaneId,
    /// Experiment variant.
    pub variant: Arc<str>,
    /// Whether the experiment's shadow variant runs it too (after the answer).
    pub shadow: bool,
    /// When the ingress accepted it.
    pub received: Instant,
    /// When its budget runs out.
    pub deadline: Instant,
    /// Where the answer goes; closed when the client went away.
    pub reply: oneshot::Sender<Result<Answer, RecdError>>,
}

impl PendingRequest {
    /// True when nobody waits for the answer any more (client disconnected).
    pub fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }

    /// Sends the answer; a vanished receiver is not an error.
    pub fn answer(self, result: Result<Answer, RecdError>) {
        let _ = self.reply.send(result);
    }
}

/// What a pipeline worker tells the gateway when a batch is done (also when it panicked):
/// the worker is free again, and the batch's size and time feed the service-time model.
#[derive(Debug, Clone, Copy)]
pub struct BatchDone {
    /// Slot of the worker.
    pub worker: usize,
    /// The batch's lane (a batch comes from one lane).
    pub lane: LaneId,
    /// Requests that went through the whole pipeline (0 if the batch did no work).
    pub size: usize,
    /// Time the pipeline spent on it.
    pub took: Duration,
}

/// A successful answer with its stage timings.
#[derive(Debug)]
pub struct Answer {
    /// The response body.
    pub response: RecommendResponse,
    /// Time per stage, for `Server-Timing`.
    pub timings: StageTimings,
    /// The trace id the batch's remote calls carried (its most urgent request's).
    pub batch_trace: u128,
}

/// Time a request spent in each stage.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageTimings {
    /// Waiting in the gateway's lane queue.
    pub queue: Duration,
    /// Feature fetch of its batch.
    pub features: Duration,
    /// ANN scatter-gather of its batch.
    pub candidates: Duration,
    /// Scoring of its batch.
    pub rank: Duration,
}

impl StageTimings {
    /// The `Server-Timing` header value (milliseconds) given the total.
    pub fn server_timing(&self, total: Duration) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "queue;dur={:.3}, features;dur={:.3}, candidates;dur={:.3}, rank;dur={:.3}, total;dur={:.3}",
            ms(self.queue),
            ms(self.features),
            ms(self.candidates),
            ms(self.rank),
            ms(total)
        )
    }
}
