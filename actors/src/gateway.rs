//! The `Gateway` actor: priority lanes, deadline-sized micro-batches, early refusal and
//! the in-flight bound.
//!
//! ```text
//! Ingress ──Submit──► Gateway ──Run(batch)──► PipelineWorker[i]   (≤ 1 batch each)
//!                      lanes: LaneQueues (weighted EDF)
//!                      model: ServiceModel  ◄── BatchDone{i, size, took} (drop guard)
//! ```
//!
//! ractor's mailbox is FIFO, so lanes live inside the gateway: a bounded queue per lane
//! (`gateway.lanes[].capacity`, total `gateway.max_queued`; when full the lowest lane is
//! shed first), each served earliest deadline first with a reserved share per lane.
//!
//! With `batching: deadline` (default) a batch closes when the earliest queued deadline
//! minus the predicted time of the batch (an EWMA per batch size, learned from
//! `BatchDone`) falls under `deadline_margin_us`, when it is full, or at the
//! `max_wait_us` cap. At dispatch a request that cannot make its deadline even in a batch
//! of one is refused (504) alone, never its batch (its batch runs earliest-deadline-first
//! in the compute queue, so refusing on the average batch time turned away requests that
//! still made it). Refusing at submit on a predicted queue drain was measured and dropped:
//! it cost 10-15 % goodput at 2× load (ADR 0008). With `batching: fixed` a batch closes on
//! size or age only and nothing is refused early. With `eager_when_idle`, a batch leaves
//! at once when no batch is in flight. A full lane is published as saturated so the
//! ingress refuses its requests before reading their bodies. Requests whose client left
//! are dropped at dispatch.

use crate::pipeline::PipelineMessage;
use crate::request::{BatchDone, PendingRequest};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, DerivedActorRef};
use recd_runtime::batching::{can_meet, BatchPolicy, Decision, QueueView, ServiceModel};
use recd_runtime::config::{BatchingMode, GatewayConfig};
use recd_runtime::lanes::{LaneQueues, LaneSaturation, Offer};
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::{PoolSlots, WorkerFactory};
use recd_runtime::RecdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Batch time assumed before the first batch is measured.
const PRIOR_BATCH_TIME: Duration = Duration::from_millis(2);
/// How soon to look again when no pipeline worker is live.
const NO_WORKER_RETRY: Duration = Duration::from_millis(5);

/// Messages of the gateway.
pub enum GatewayMessage {
    /// A new admitted request.
    Submit(PendingRequest),
    /// A batching timer fired.
    Flush,
    /// A pipeline worker finished a batch.
    BatchDone(BatchDone),
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for GatewayMessage {}

// the pipeline holds a port of just this message (`DerivedActorRef<BatchDone>`)
impl From<BatchDone> for GatewayMessage {
    fn from(done: BatchDone) -> Self {
        GatewayMessage::BatchDone(done)
    }
}

impl TryFrom<GatewayMessage> for BatchDone {
    type Error = ();
    fn try_from(m: GatewayMessage) -> Result<Self, ()> {
        match m {
            GatewayMessage::BatchDone(done) => Ok(done),
            _ => Err(()),
        }
    }
}

/// Start arguments of the gateway (and its pool factory: a pool of one, so the gateway is
/// supervised and restarted like every stage).
#[derive(Clone)]
pub struct GatewayArgs {
    /// Lanes and batching.
    pub config: GatewayConfig,
    /// The pipeline workers.
    pub workers: Arc<PoolSlots<PipelineMessage>>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Published lane saturation (read by the ingress to refuse early and cheaply).
    pub saturation: Arc<LaneSaturation>,
}

/// The gateway actor.
pub struct Gateway;

/// Gateway state.
pub struct GatewayState {
    args: GatewayArgs,
    queues: LaneQueues<PendingRequest>,
    /// Per pipeline slot: the actor a batch was sent to and not yet reported done. A
    /// slot whose actor has since been replaced is free (its batch died with it).
    busy: Vec<Option<ActorId>>,
    flush_at: Option<Instant>,
    policy: BatchPolicy,
    model: ServiceModel,
    /// Per-lane metric handles, resolved once: these are touched on every request.
    depth: Vec<prometheus::IntGauge>,
    wait: Vec<prometheus::Histogram>,
    /// The port pipeline workers report finished batches to.
    done: DerivedActorRef<BatchDone>,
}

impl Actor for Gateway {
    type Msg = GatewayMessage;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: GatewayArgs,
    ) -> Result<GatewayState, ActorProcessingErr> {
        let c = &args.config;
        let queues = LaneQueues::new(
            c.lanes.iter().map(|l| l.weight).collect(),
            c.lanes.iter().map(|l| l.capacity).collect(),
            c.max_queued,
        );
        let max_wait = Duration::from_micros(c.max_wait_us);
        let policy = match c.batching {
            BatchingMode::Fixed => BatchPolicy::Fixed { max_wait },
            BatchingMode::Deadline => BatchPolicy::Deadline {
                margin: Duration::from_micros(c.deadline_margin_us),
                max_wait,
            },
        };
        let names: Vec<&str> = c.lanes.iter().map(|l| l.name.as_str()).collect();
        let depth = names
            .iter()
            .map(|n| args.metrics.queue_depth.with_label_values(&[n]))
            .collect();
        let wait = names
            .iter()
            .map(|n| args.metrics.queue_wait.with_label_values(&[n]))
            .collect();
        Ok(GatewayState {
            done: myself.get_derived(),
            depth,
            wait,
            busy: vec![None; args.workers.len()],
            queues,
            flush_at: None,
            policy,
            model: ServiceModel::new(PRIOR_BATCH_TIME),
            args,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        let now = recd_runtime::clock::now();
        match msg {
            GatewayMessage::Submit(req) => state.submit(req, now),
            GatewayMessage::Flush => state.flush_at = None,
            GatewayMessage::BatchDone(done) => state.batch_done(done),
        }
        state.dispatch(&myself, now);
        Ok(())
    }
}

impl GatewayState {
    fn lane_name(&self, lane: usize) -> &str {
        &self.args.config.lanes[lane].name
    }

    fn shed(&self, lane: usize, reason: &str) {
        self.args
            .metrics
            .shed
            .with_label_values(&[self.lane_name(lane), reason])
            .inc();
    }

    fn deadline_mode(&self) -> bool {
        matches!(self.policy, BatchPolicy::Deadline { .. })
    }

    fn submit(&mut self, req: PendingRequest, now: Instant) {
        if req.cancelled() {
            self.shed(req.lane, "cancelled");
            return;
        }
        let lane = req.lane;
        if self.queues.len() >= self.args.config.max_queued
            || self.queues.lane_len(lane) >= self.args.config.lanes[lane].capacity
        {
            // expired and abandoned requests must not cost a live one its place
            self.drop_dead(now);
        }
        let deadline = req.deadline;
        match self.queues.offer(lane, req, now, deadline) {
            Offer::Queued => {}
            Offer::QueuedEvicting(victim) => {
                self.shed(victim.lane, "displaced");
                let name = self.lane_name(victim.lane).to_owned();
                victim.answer(Err(RecdError::overloaded(format!(
                    "shed: lane {name} displaced by higher-priority traffic"
                ))));
            }
            Offer::Refused(req) => {
                self.shed(lane, "queue_full");
                let name = self.lane_name(lane).to_owned();
                req.answer(Err(RecdError::overloaded(format!(
                    "shed: lane {name} queue is full"
                ))));
            }
        }
    }

    fn batch_done(&mut self, BatchDone { worker, size, took }: BatchDone) {
        if let Some(b) = self.busy.get_mut(worker) {
            *b = None;
        }
        if size > 0 {
            self.model.observe(size, took);
        }
        let full = self.model.predict(self.args.config.max_batch);
        self.args
            .metrics
            .predicted_batch_seconds
            .set(full.as_secs_f64());
    }

    /// Exports queue depths and publishes which lanes are full (saturated: the ingress
    /// refuses their requests before reading the body).
    fn report_depth(&self) {
        for lane in 0..self.queues.lanes() {
            let config = &self.args.config.lanes[lane];
            let full = self.queues.lane_len(lane) >= config.capacity;
            self.args.saturation.set(lane, full);
            self.depth[lane].set(self.queues.lane_len(lane) as i64);
        }
    }

    fn idle_worker(&self) -> Option<(usize, ActorRef<PipelineMessage>)> {
        (0..self.busy.len()).find_map(|i| {
            let w = self.args.workers.get(i)?;
            (self.busy[i] != Some(w.get_id())).then_some((i, w))
        })
    }

    fn any_busy(&self) -> bool {
        self.busy.iter().any(Option::is_some)
    }

    fn dispatch(&mut self, myself: &ActorRef<GatewayMessage>, now: Instant) {
        while let (Some(oldest), Some(earliest_deadline)) =
            (self.queues.oldest(), self.queues.earliest_deadline())
        {
            let Some((slot, worker)) = self.idle_worker() else {
                if self.args.workers.live() == 0 {
                    // every pipeline worker is restarting: look again soon rather than
                    // leaving the queue to the ingress timeouts
                    self.schedule_flush(myself, now, now + NO_WORKER_RETRY);
                }
                break;
            };
            let idle = self.args.config.eager_when_idle && !self.any_busy();
            let view = QueueView {
                queued: self.queues.len(),
                oldest,
                earliest_deadline,
            };
            let decision = if idle {
                Decision::Dispatch
            } else {
                self.policy
                    .decide(now, view, self.args.config.max_batch, &self.model)
            };
            if let Decision::WaitUntil(at) = decision {
                self.schedule_flush(myself, now, at);
                break;
            }
            self.drop_dead(now);
            let batch = self.queues.pop_batch(self.args.config.max_batch);
            let n = batch.len();
            let mut requests = Vec::with_capacity(n);
            for (lane, entry) in batch {
                let waited = now
                    .saturating_duration_since(entry.enqueued_at)
                    .as_secs_f64();
                self.wait[lane].observe(waited);
                if self.deadline_mode() && !can_meet(now, entry.deadline, 1, &self.model) {
                    self.shed(lane, "cannot_meet_deadline");
                    entry.item.answer(Err(RecdError::deadline(format!(
                        "cannot meet the deadline: {:.1} ms left, even alone it takes ~{:.1} ms",
                        entry.deadline.saturating_duration_since(now).as_secs_f64() * 1e3,
                        self.model.predict(1).as_secs_f64() * 1e3
                    ))));
                    continue;
                }
                requests.push(entry.item);
            }
            if requests.is_empty() {
                continue;
            }
            self.args.metrics.batch_size.observe(requests.len() as f64);
            let run = PipelineMessage::Run {
                batch: requests,
                dispatched: now,
                worker: slot,
                done: self.done.clone(),
            };
            match worker.cast(run) {
                Ok(()) => self.busy[slot] = Some(worker.get_id()),
                Err(e) => {
                    if let ractor::MessagingErr::SendErr(PipelineMessage::Run { batch, .. }) = e {
                        for req in batch {
                            self.shed(req.lane, "no_worker");
                            req.answer(Err(RecdError::unavailable("pipeline worker unavailable")));
                        }
                    }
                }
            }
        }
        self.report_depth();
    }

    fn schedule_flush(&mut self, myself: &ActorRef<GatewayMessage>, now: Instant, at: Instant) {
        if self.flush_at.is_none_or(|t| at < t) {
            self.flush_at = Some(at);
            myself.send_after(at.saturating_duration_since(now), || GatewayMessage::Flush);
        }
    }

    /// Answers and removes requests whose deadline passed or whose client left.
    fn drop_dead(&mut self, now: Instant) {
        let dead = self
            .queues
            .remove_where(|r| r.cancelled() || r.deadline <= now);
        for entry in dead {
            let req = entry.item;
            if req.cancelled() {
                self.shed(req.lane, "cancelled");
            } else {
                self.shed(req.lane, "deadline");
                req.answer(Err(RecdError::deadline(
                    "latency budget spent while queued",
                )));
            }
        }
    }
}

impl WorkerFactory for GatewayArgs {
    type Worker = Gateway;
    fn make(&self, _slot: usize) -> (Gateway, GatewayArgs) {
        (Gateway, self.clone())
    }
}

#[cfg(test)]
mod tests;
