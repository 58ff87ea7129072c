//! The `Gateway` actor: priority lanes, micro-batching and the in-flight bound.
//!
//! ```text
//! Ingress ──Submit──► Gateway ──Run(batch)──► PipelineWorker[i]   (≤ 1 batch each)
//!                      lanes: LaneQueues       │
//!                      ◄────── BatchDone{i} ───┘  (sent by a drop guard, even on panic)
//! ```
//!
//! ractor's mailbox is FIFO, so lanes live inside the gateway: a bounded queue per lane
//! (`gateway.lanes[].capacity`, total `gateway.max_queued`; when full the lowest lane is
//! shed first). A batch is dispatched to an idle pipeline worker when `max_batch`
//! requests wait, the oldest has waited `max_wait_us`, or (with `eager_when_idle`) no
//! batch is in flight at all. Requests whose deadline passed
//! or whose client left are dropped at dispatch, never sent down the pipeline. With
//! every worker busy, requests wait in the lanes: in-flight batches are bounded by the
//! pipeline pool size.

use crate::pipeline::PipelineMessage;
use crate::request::PendingRequest;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use recd_runtime::config::GatewayConfig;
use recd_runtime::lanes::{LaneQueues, Offer};
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::{PoolSlots, WorkerFactory};
use recd_runtime::RecdError;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages of the gateway.
pub enum GatewayMessage {
    /// A new admitted request.
    Submit(PendingRequest),
    /// The batching timer fired.
    Flush,
    /// Pipeline worker `worker` finished its batch.
    BatchDone {
        /// Slot of the worker.
        worker: usize,
    },
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
}

/// The gateway actor.
pub struct Gateway;

/// Gateway state.
pub struct GatewayState {
    args: GatewayArgs,
    queues: LaneQueues<PendingRequest>,
    busy: Vec<bool>,
    flush_pending: bool,
    max_wait: Duration,
}

impl Actor for Gateway {
    type Msg = GatewayMessage;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: GatewayArgs,
    ) -> Result<GatewayState, ActorProcessingErr> {
        let lanes = &args.config.lanes;
        let queues = LaneQueues::new(
            lanes.iter().map(|l| l.weight).collect(),
            lanes.iter().map(|l| l.capacity).collect(),
            args.config.max_queued,
        );
        Ok(GatewayState {
            busy: vec![false; args.workers.len()],
            max_wait: Duration::from_micros(args.config.max_wait_us),
            queues,
            flush_pending: false,
            args,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        match msg {
            GatewayMessage::Submit(req) => state.submit(req, now),
            GatewayMessage::Flush => state.flush_pending = false,
            GatewayMessage::BatchDone { worker } => {
                if let Some(b) = state.busy.get_mut(worker) {
                    *b = false;
                }
            }
        }
        state.dispatch(&myself, now);
        Ok(())
    }
}

impl GatewayState {
    fn lane_name(&self, lane: usize) -> &str {
        &self.args.config.lanes[lane].name
    }

    fn submit(&mut self, req: PendingRequest, now: Instant) {
        let lane = req.lane;
        match self.queues.offer(lane, req, now) {
            Offer::Queued => {}
            Offer::QueuedEvicting(victim) => {
                let name = self.lane_name(victim.lane).to_owned();
                self.args
                    .metrics
                    .shed
                    .with_label_values(&[&name, "displaced"])
                    .inc();
                victim.answer(Err(RecdError::overloaded(format!(
                    "shed: lane {name} displaced by higher-priority traffic"
                ))));
            }
            Offer::Refused(req) => {
                let name = self.lane_name(lane).to_owned();
                self.args
                    .metrics
                    .shed
                    .with_label_values(&[&name, "queue_full"])
                    .inc();
                req.answer(Err(RecdError::overloaded(format!(
                    "shed: lane {name} queue is full"
                ))));
            }
        }
        self.report_depth();
    }

    fn report_depth(&self) {
        for lane in 0..self.queues.lanes() {
            self.args
                .metrics
                .queue_depth
                .with_label_values(&[self.lane_name(lane)])
                .set(self.queues.lane_len(lane) as i64);
        }
    }

    fn idle_worker(&self) -> Option<(usize, ActorRef<PipelineMessage>)> {
        (0..self.busy.len()).find_map(|i| {
            if self.busy[i] {
                None
            } else {
                self.args.workers.get(i).map(|w| (i, w))
            }
        })
    }

    fn dispatch(&mut self, myself: &ActorRef<GatewayMessage>, now: Instant) {
        while let Some(oldest) = self.queues.oldest() {
            let waited = now.saturating_duration_since(oldest);
            let idle = self.args.config.eager_when_idle && !self.busy.contains(&true);
            if self.queues.len() < self.args.config.max_batch && waited < self.max_wait && !idle {
                if !self.flush_pending {
                    self.flush_pending = true;
                    myself.send_after(self.max_wait - waited, || GatewayMessage::Flush);
                }
                break;
            }
            let Some((slot, worker)) = self.idle_worker() else {
                break;
            };
            self.drop_dead(now);
            let batch: Vec<_> = self.queues.pop_batch(self.args.config.max_batch);
            if batch.is_empty() {
                continue;
            }
            let metrics = &self.args.metrics;
            metrics.batch_size.observe(batch.len() as f64);
            let mut requests = Vec::with_capacity(batch.len());
            for (lane, entry) in batch {
                metrics
                    .queue_wait
                    .with_label_values(&[self.lane_name(lane)])
                    .observe(
                        now.saturating_duration_since(entry.enqueued_at)
                            .as_secs_f64(),
                    );
                requests.push(entry.item);
            }
            let run = PipelineMessage::Run {
                batch: requests,
                dispatched: now,
                worker: slot,
                gateway: myself.clone(),
            };
            match worker.cast(run) {
                Ok(()) => self.busy[slot] = true,
                Err(ractor::MessagingErr::SendErr(PipelineMessage::Run { batch, .. })) => {
                    for req in batch {
                        req.answer(Err(RecdError::unavailable("pipeline worker unavailable")));
                    }
                }
                Err(_) => {}
            }
        }
        self.report_depth();
    }

    /// Answers and removes requests whose deadline passed or whose client left.
    fn drop_dead(&mut self, now: Instant) {
        let dead = self
            .queues
            .remove_where(|r| r.cancelled() || r.deadline <= now);
        for entry in dead {
            let req = entry.item;
            let lane = self.args.config.lanes[req.lane].name.clone();
            if req.cancelled() {
                self.args
                    .metrics
                    .shed
                    .with_label_values(&[&lane, "cancelled"])
                    .inc();
            } else {
                self.args
                    .metrics
                    .shed
                    .with_label_values(&[&lane, "deadline"])
                    .inc();
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
