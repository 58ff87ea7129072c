//! The `Gateway` actor: priority lanes, deadline-sized micro-batches, early refusal and
//! the in-flight bound.
//!
//! ```text
//! Ingress ──Submit──► Gateway ──Run(batch)──► PipelineWorker[i]   (≤ 1 batch each)
//!                      lanes: LaneQueues (one lane per batch, weighted fair turns)
//!                      model: ServiceModel  ◄── BatchDone{i, size, took} (drop guard)
//! ```
//!
//! ractor's mailbox is FIFO, so lanes live inside the gateway: a bounded queue per lane
//! (`gateway.lanes[].capacity`, total `gateway.max_queued`; when full the lowest lane is
//! shed first), each served earliest deadline first; a batch comes from one lane, and
//! lanes take turns by weighted fair share of the requests served (docs/adr/0014).
//!
//! With `batching: deadline` (default) a batch closes when the lane's earliest queued
//! deadline minus the predicted time of the batch (an EWMA per lane and batch size,
//! learned from `BatchDone`) falls under `deadline_margin_us`, when it is full, or at the
//! `max_wait_us` cap. At dispatch a request that cannot make its deadline in a batch of
//! the size being formed (the tail of its lane's batch time, learned under the current
//! load) is refused (504)
//! alone, never its batch, and its place refilled (docs/adr/0014: with the old rule — a
//! batch of one — overloaded EDF dispatched mostly requests about to expire, and their
//! deadlines cut every stage of their batches short). Refusing at submit on a predicted
//! queue drain was measured and dropped: it cost 10-15 % goodput at 2× load (ADR 0008). With `batching: fixed` a batch closes on
//! size or age only and nothing is refused early. With `eager_when_idle`, a batch leaves
//! at once when no batch is in flight. A full lane is published as saturated so the
//! ingress refuses its requests before reading their bodies. Requests whose client left
//! are dropped at dispatch.

use crate::pipeline::PipelineMessage;
use crate::request::{BatchDone, PendingRequest};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, DerivedActorRef};
use recd_runtime::batching::{can_meet, Admit, BatchPolicy, Decision, QueueView, ServiceModel};
use recd_runtime::config::{BatchingMode, GatewayConfig};
use recd_runtime::lanes::{LaneId, LaneQueues, LaneSaturation, Offer};
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
    /// Per lane: the time of its batches by size (a lane's batches share a budget and,
    /// in the compute queue, a priority, so they take their own time).
    models: Vec<ServiceModel>,
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
            models: vec![ServiceModel::new(PRIOR_BATCH_TIME); c.lanes.len()],
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

    fn batch_done(&mut self, done: BatchDone) {
        if let Some(b) = self.busy.get_mut(done.worker) {
            *b = None;
        }
        if let Some(model) = self.models.get_mut(done.lane).filter(|_| done.size > 0) {
            model.observe(done.size, done.took);
        }
        // the slowest lane's full batch: what the gauge has always shown on one lane
        let full = (self.models.iter())
            .map(|m| m.predict(self.args.config.max_batch))
            .max()
            .unwrap_or_default();
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

    /// The lane whose batch goes next: lanes in fair-share order, the first whose batch
    /// is due (any, when `idle`: nothing was in flight when this round of dispatching
    /// began and `eager_when_idle` is on); else when to look again.
    fn due_lane(&self, now: Instant, idle: bool) -> Result<LaneId, Option<Instant>> {
        let mut wake: Option<Instant> = None;
        for lane in self.queues.lanes_by_share() {
            let Some((oldest, earliest_deadline)) = self.queues.head(lane) else {
                continue;
            };
            if idle {
                return Ok(lane);
            }
            let view = QueueView {
                queued: self.queues.lane_len(lane),
                oldest,
                earliest_deadline,
            };
            let max = self.args.config.max_batch;
            match self.policy.decide(now, view, max, &self.models[lane]) {
                Decision::Dispatch => return Ok(lane),
                Decision::WaitUntil(at) => wake = Some(wake.map_or(at, |w| w.min(at))),
            }
        }
        Err(wake)
    }

    fn dispatch(&mut self, myself: &ActorRef<GatewayMessage>, now: Instant) {
        // idle at the start of the round: every lane queued now leaves at once (a batch
        // each, while workers are free), not just the first
        let idle = self.args.config.eager_when_idle && !self.any_busy();
        while !self.queues.is_empty() {
            let Some((slot, worker)) = self.idle_worker() else {
                if self.args.workers.live() == 0 {
                    // every pipeline worker is restarting: look again soon rather than
                    // leaving the queue to the ingress timeouts
                    self.schedule_flush(myself, now, now + NO_WORKER_RETRY);
                }
                break;
            };
            let lane = match self.due_lane(now, idle) {
                Ok(lane) => lane,
                Err(wake) => {
                    if let Some(at) = wake {
                        self.schedule_flush(myself, now, at);
                    }
                    break;
                }
            };
            self.drop_dead(now);
            let requests = self.fill_batch(lane, now);
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

    /// Takes up to `max_batch` requests, earliest deadline first by lane share. In
    /// deadline mode a request that cannot finish in time in a batch of this size (the
    /// batch's predicted time, learned under the current load) is refused alone (504) and
    /// its place refilled: served, it would become the whole batch's budget and cut every
    /// other request's stages short; under overload, serving the most urgent requests
    /// first would otherwise serve mostly requests that are about to expire.
    fn fill_batch(&mut self, lane: LaneId, now: Instant) -> Vec<PendingRequest> {
        let max = self.args.config.max_batch;
        let size = max.min(self.queues.lane_len(lane));
        let mut requests = Vec::with_capacity(size);
        while requests.len() < max && self.queues.lane_len(lane) > 0 {
            for entry in self.queues.pop_lane(lane, max - requests.len()) {
                let waited = now.saturating_duration_since(entry.enqueued_at);
                self.wait[lane].observe(waited.as_secs_f64());
                let model = &self.models[lane];
                // the top lane would rather be answered degraded than refused; the
                // others are admitted only when their batch will run every rung
                let admit = if lane == 0 {
                    Admit::OnMean
                } else {
                    Admit::OnTail
                };
                if self.deadline_mode() && !can_meet(now, entry.deadline, size, model, admit) {
                    self.shed(lane, "cannot_meet_deadline");
                    entry.item.answer(Err(RecdError::deadline(format!(
                        "cannot meet the deadline: {:.1} ms left, a batch of {size} takes up to ~{:.1} ms",
                        entry.deadline.saturating_duration_since(now).as_secs_f64() * 1e3,
                        match admit {
                            Admit::OnMean => model.predict(size),
                            Admit::OnTail => model.predict_tail(size),
                        }
                        .as_secs_f64()
                            * 1e3
                    ))));
                    continue;
                }
                requests.push(entry.item);
            }
        }
        // the lane pays for the requests it is served, not for those refused
        self.queues.charge(lane, requests.len());
        requests
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
