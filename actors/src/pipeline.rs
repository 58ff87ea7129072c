//! The flow of one micro-batch through the stages, run by a pool of `PipelineWorker`
//! actors (one batch per worker at a time; the gateway bounds batches in flight).
//!
//! ```text
//! Run(batch) ─► drop cancelled / expired
//!            ─► FeatureShard[f] Lookup      one call per owning shard   (late → default profile)
//!            ─► per variant of the batch (serve), concurrently:
//!               ─► IndexShard[0..S] Search  one call per shard, k' each (late → coverage < 1)
//!               ─► merge top `candidates` per request; drop requests cancelled meanwhile
//!               ─► Ranker Score             one call, the variant's model (short budget →
//!                                           fewer, or none)
//!               ─► top-k per request, answer each reply port
//! ```
//!
//! A variant's [`Plan`] (from `ab_scenarios.yaml`) sets its candidates, search breadth
//! and model; every answer names the `name@version` that scored it.
//!
//! Every call carries the batch's most urgent lane and deadline (compute queues serve
//! earliest deadline first) and a timeout cut to the remaining budget; which rungs of the
//! degradation ladder ([`ladder`]) a batch takes is decided from that budget. A fallback
//! is counted in `recd_degraded_total` and named in `degraded`.

pub mod ladder;
mod serve;
pub mod shadow;
mod stages;

use crate::experiments::Plan;
use crate::features::profile::ProfileSource;
use crate::items::Items;
use crate::remote::router::Router;
use crate::request::{BatchDone, PendingRequest};
use crate::types::{ModelRef, Profile};
use ladder::StageModels;
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use recd_runtime::clock::now;
use recd_runtime::compute::Priority;
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::WorkerFactory;
use recd_runtime::RecdError;
use serve::Shared;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Messages of a pipeline worker.
pub enum PipelineMessage {
    /// Process one micro-batch.
    Run {
        /// The batch's requests.
        batch: Vec<PendingRequest>,
        /// When the gateway dispatched it.
        dispatched: Instant,
        /// This worker's slot (echoed in `BatchDone`).
        worker: usize,
        /// Who to tell when the batch is done (the gateway, through a port of just that).
        done: DerivedActorRef<BatchDone>,
    },
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for PipelineMessage {}

/// Stage timeouts and fan-out sizes.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Feature lookup timeout.
    pub features_timeout: Duration,
    /// Index search timeout.
    pub index_timeout: Duration,
    /// Ranker timeout.
    pub ranker_timeout: Duration,
    /// Candidates re-ranked on the `rank_truncated` rung.
    pub truncate_to: usize,
    /// Per lane: the oldest cached profile served (first rung of the ladder).
    pub profile_max_age: Vec<Duration>,
    /// Lane names, for the metrics.
    pub lanes: Vec<String>,
    /// Whether requests the batch cannot serve are refused at its start (deadline
    /// batching; fixed batching refuses nothing early).
    pub refuse_early: bool,
}

/// What every pipeline worker shares.
pub struct PipelineCtx {
    /// Where shard and ranker calls go (local actors or peers).
    pub router: Arc<Router>,
    /// The live items (ANN-order fallback scores; deleted items are dropped).
    pub items: Arc<Items>,
    /// The default profile for fallbacks.
    pub source: ProfileSource,
    /// Timeouts and sizes.
    pub settings: PipelineSettings,
    /// What each experiment variant runs (the first also for an unknown variant).
    pub plans: Vec<Plan>,
    /// The experiment's shadow variant, if it has one.
    pub shadow: Option<shadow::Shadow>,
    /// The cheaper model a batch falls back to when its budget cannot pay for its
    /// variant's (`models.fallback`: the student rung).
    pub fallback: Option<ModelRef>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Per lane and plan: the stages' time models (a lane's batches run at its own
    /// priority; a variant's plan has its own costs). Lane-major.
    models: Mutex<Vec<StageModels>>,
}

impl PipelineCtx {
    /// Bundles the pipeline's dependencies.
    pub fn new(
        router: Arc<Router>,
        items: Arc<Items>,
        source: ProfileSource,
        settings: PipelineSettings,
        plans: Vec<Plan>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let lanes = settings.lanes.len().max(1);
        assert!(!plans.is_empty(), "at least one variant plan");
        let plans_len = plans.len();
        Self {
            router,
            items,
            source,
            settings,
            plans,
            shadow: None,
            fallback: None,
            metrics,
            models: Mutex::new(vec![StageModels::default(); lanes * plans_len]),
        }
    }

    /// Runs `f` on the time models of `lane`'s batches of the first plan (what a
    /// batch decides before it splits by variant).
    fn models<R>(&self, lane: usize, f: impl FnOnce(&mut StageModels) -> R) -> R {
        self.plan_models(lane, 0, f)
    }

    /// Runs `f` on the time models of `lane`'s requests of plan `plan`.
    fn plan_models<R>(&self, lane: usize, plan: usize, f: impl FnOnce(&mut StageModels) -> R) -> R {
        let mut all = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let plans = self.plans.len();
        let lanes = all.len() / plans;
        f(&mut all[lane.min(lanes - 1) * plans + plan.min(plans - 1)])
    }

    /// The plan of `variant` (the first for a name no plan has).
    fn plan_index(&self, variant: &str) -> usize {
        (self.plans.iter())
            .position(|p| p.variant == variant)
            .unwrap_or(0)
    }

    fn shed(&self, lane: usize, reason: &str) {
        let name = self
            .settings
            .lanes
            .get(lane)
            .map_or("unknown", String::as_str);
        self.metrics.shed.with_label_values(&[name, reason]).inc();
    }
}

/// The pipeline worker actor.
pub struct PipelineWorker;

/// Pool factory of pipeline workers.
#[derive(Clone)]
pub struct PipelineArgs(pub Arc<PipelineCtx>);

impl WorkerFactory for PipelineArgs {
    type Worker = PipelineWorker;
    fn make(&self, _slot: usize) -> (PipelineWorker, Arc<PipelineCtx>) {
        (PipelineWorker, Arc::clone(&self.0))
    }
}

/// Tells the gateway the worker is free again (with the batch's size and time, for its
/// service-time model), also when the batch panics.
struct DoneGuard {
    done: DerivedActorRef<BatchDone>,
    worker: usize,
    lane: usize,
    /// Requests the pipeline actually processed (0 until the batch completes): the
    /// gateway's batch-time model must not learn from batches that did no work.
    size: usize,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.metrics.batches_in_flight.dec();
        let took = now().saturating_duration_since(self.started);
        let _ = self.done.send_message(BatchDone {
            worker: self.worker,
            lane: self.lane,
            size: self.size,
            took,
        });
    }
}

impl Actor for PipelineWorker {
    type Msg = PipelineMessage;
    type State = Arc<PipelineCtx>;
    type Arguments = Arc<PipelineCtx>;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        ctx: Arc<PipelineCtx>,
    ) -> Result<Arc<PipelineCtx>, ActorProcessingErr> {
        Ok(ctx)
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        ctx: &mut Arc<PipelineCtx>,
    ) -> Result<(), ActorProcessingErr> {
        let PipelineMessage::Run {
            batch,
            dispatched,
            worker,
            done,
        } = msg;
        ctx.metrics.batches_in_flight.inc();
        let mut done = DoneGuard {
            done,
            worker,
            lane: batch.iter().map(|r| r.lane).min().unwrap_or(0),
            size: 0,
            started: now(),
            metrics: Arc::clone(&ctx.metrics),
        };
        done.size = run_batch(ctx, batch, dispatched).await;
        Ok(())
    }
}

/// Per-request working state inside a batch.
struct Work {
    req: PendingRequest,
    profile: Arc<Profile>,
    degraded: Vec<&'static str>,
}

/// Runs one batch and answers every request in it; returns how many requests went
/// through the whole pipeline. The batch is a `batch` span with the trace id of its most
/// urgent request, which its stage spans and remote calls carry too.
pub async fn run_batch(
    ctx: &Arc<PipelineCtx>,
    batch: Vec<PendingRequest>,
    dispatched: Instant,
) -> usize {
    use tracing::Instrument;
    let lead = (batch.iter().min_by_key(|r| r.deadline)).map_or(0, |r| r.trace);
    let span = tracing::debug_span!("batch", trace_id = %recd_runtime::trace::hex(lead), requests = batch.len());
    run_traced(ctx, batch, dispatched, lead)
        .instrument(span)
        .await
}

async fn run_traced(
    ctx: &Arc<PipelineCtx>,
    batch: Vec<PendingRequest>,
    dispatched: Instant,
    lead: u128,
) -> usize {
    let start = now();
    // a batch comes from one lane (the gateway's); its lane's models decide its rungs
    let lane = batch.iter().map(|r| r.lane).min().unwrap_or(0);
    // with deadline batching, a request this batch cannot serve at all (less time left
    // than its candidates take) is refused alone: kept, its deadline would become every
    // request's budget, and the whole batch would time out with it
    let least = match ctx.settings.refuse_early {
        true => ctx.models(lane, |m| m.least(batch.len())),
        false => Duration::ZERO,
    };
    let mut work = Vec::with_capacity(batch.len());
    for req in batch {
        if req.cancelled() {
            continue;
        }
        if req.deadline <= start + least {
            let left = req.deadline.saturating_duration_since(start);
            ctx.shed(req.lane, "cannot_meet_deadline");
            req.answer(Err(RecdError::deadline(format!(
                "cannot meet the deadline: {:.1} ms left, this batch's candidates take ~{:.1} ms",
                left.as_secs_f64() * 1e3,
                least.as_secs_f64() * 1e3
            ))));
            continue;
        }
        work.push(Work {
            req,
            profile: ctx.source.default_profile(),
            degraded: Vec::new(),
        });
    }
    let Some(earliest) = work.iter().map(|w| w.req.deadline).min() else {
        return 0;
    };
    let priority = Priority {
        deadline: earliest,
        lane,
        trace: lead,
    };
    let remaining = || earliest.saturating_duration_since(now());
    // the widest plan's candidates: what the rest of the pipeline may cost at most
    let cands = (ctx.plans.iter()).map(|p| p.candidates).max().unwrap_or(1);
    let (truncate_to, b) = (ctx.settings.truncate_to.min(cands), work.len());

    let t = now();
    // rung 1: cached profiles young enough for the lane are always used; a miss is
    // fetched only while the budget pays for the rest of the pipeline
    let fetch = ctx.models(lane, |m| {
        m.fetch_features(remaining(), b, cands, truncate_to)
    });
    let timeout = cut(ctx.settings.features_timeout, remaining());
    stages::fetch_profiles(ctx, &mut work, fetch, priority, timeout).await;
    if fetch {
        ctx.models(lane, |m| m.features.observe(b, t.elapsed_since()));
    }
    let features = t.elapsed_since();
    observe(ctx, "features", features);

    let shared = Shared {
        lane,
        priority,
        earliest,
        dispatched,
        features,
    };
    // each variant's requests run its own plan: candidates, search breadth and model
    let mut groups: Vec<(usize, Vec<Work>)> = Vec::new();
    for w in work {
        let p = ctx.plan_index(&w.req.variant);
        match groups.iter_mut().find(|(q, _)| *q == p) {
            Some((_, g)) => g.push(w),
            None => groups.push((p, vec![w])),
        }
    }
    let served = groups
        .into_iter()
        .map(|(p, g)| serve::serve_group(ctx, p, g, &shared));
    let mut processed = 0;
    let mut shadowed = Vec::new();
    for (n, cases) in futures_util::future::join_all(served).await {
        processed += n;
        shadowed.extend(cases);
    }
    // the primary answers have gone: only now may their shadow run
    shadow::launch(ctx, shadowed);
    processed
}

/// A stage's timeout within what is left of the budget (at least 1 ms).
fn cut(stage: Duration, budget: Duration) -> Duration {
    stage.min(budget).max(Duration::from_millis(1))
}

fn observe(ctx: &PipelineCtx, stage: &str, d: Duration) {
    ctx.metrics
        .stage_duration
        .with_label_values(&[stage])
        .observe(d.as_secs_f64());
}

/// Time since an instant on the request path's clock.
trait ElapsedSince {
    fn elapsed_since(&self) -> Duration;
}

impl ElapsedSince for Instant {
    fn elapsed_since(&self) -> Duration {
        now().saturating_duration_since(*self)
    }
}

#[cfg(test)]
mod tests;
