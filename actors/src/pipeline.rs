//! The flow of one micro-batch through the stages, run by a pool of `PipelineWorker`
//! actors (one batch per worker at a time; the gateway bounds batches in flight).
//!
//! ```text
//! Run(batch) ─► drop cancelled / expired
//!            ─► FeatureShard[f] Lookup      one call per owning shard   (late → default profile)
//!            ─► IndexShard[0..S] Search     one call per shard, k' each (late → coverage < 1)
//!            ─► merge top `candidates` per request; drop requests cancelled meanwhile
//!            ─► Ranker Score                one call per batch          (short budget → fewer, or none)
//!            ─► top-k per request, answer each reply port
//! ```
//!
//! Every call carries the batch's most urgent lane and deadline (compute queues serve
//! earliest deadline first) and a timeout cut to the remaining budget; which rungs of the
//! degradation ladder ([`ladder`]) a batch takes is decided from that budget. A fallback
//! is counted in `recd_degraded_total` and named in `degraded`.

pub mod ladder;
mod stages;

use crate::data::dot;
use crate::features::profile::ProfileSource;
use crate::items::Items;
use crate::ranker::model::top_k;
use crate::remote::router::Router;
use crate::request::{Answer, BatchDone, PendingRequest, StageTimings};
use crate::types::Profile;
use ladder::{RankPlan, StageModels};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef};
use recd_runtime::api::{RecommendResponse, ScoredItem};
use recd_runtime::clock::now;
use recd_runtime::compute::Priority;
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::WorkerFactory;
use recd_runtime::RecdError;
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
    /// Items asked of each index shard.
    pub per_shard_k: usize,
    /// Candidates kept after the merge.
    pub candidates: usize,
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
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Per lane: the stages' time models (a lane's batches run at its own priority).
    models: Mutex<Vec<StageModels>>,
}

impl PipelineCtx {
    /// Bundles the pipeline's dependencies.
    pub fn new(
        router: Arc<Router>,
        items: Arc<Items>,
        source: ProfileSource,
        settings: PipelineSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let lanes = settings.lanes.len().max(1);
        Self {
            router,
            items,
            source,
            settings,
            metrics,
            models: Mutex::new(vec![StageModels::default(); lanes]),
        }
    }

    /// Runs `f` on the time models of `lane`'s batches.
    fn models<R>(&self, lane: usize, f: impl FnOnce(&mut StageModels) -> R) -> R {
        let mut all = self.models.lock().unwrap_or_else(|p| p.into_inner());
        let last = all.len() - 1;
        f(&mut all[lane.min(last)])
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
/// through the whole pipeline.
pub async fn run_batch(
    ctx: &PipelineCtx,
    batch: Vec<PendingRequest>,
    dispatched: Instant,
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
    };
    let remaining = || earliest.saturating_duration_since(now());
    let cut = |stage: Duration, budget: Duration| stage.min(budget).max(Duration::from_millis(1));
    let (cands, truncate_to, b) = (
        ctx.settings.candidates,
        ctx.settings.truncate_to,
        work.len(),
    );

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

    let t = now();
    let budget = ctx.models(lane, |m| {
        m.candidates_budget(remaining(), b, cands, truncate_to)
    });
    let gathered = stages::fetch_candidates(
        ctx,
        &work,
        priority,
        cut(ctx.settings.index_timeout, budget),
    )
    .await;
    let candidates = t.elapsed_since();
    observe(ctx, "candidates", candidates);
    // without candidates nothing at all can be said: the requests fail (504 when the
    // shards ran out of time, 503 when none was reachable), counted as the candidates rung
    let (per_request, coverage) = match gathered {
        Ok(g) => g,
        Err(e) => {
            ctx.metrics
                .degraded
                .with_label_values(&["candidates"])
                .inc_by(work.len() as u64);
            for w in work {
                w.req.answer(Err(e.clone()));
            }
            return 0;
        }
    };
    if coverage < 1.0 {
        work.iter_mut().for_each(|w| w.degraded.push("candidates"));
    } else {
        ctx.models(lane, |m| m.candidates.observe(b, candidates));
    }
    // clients that left while their candidates were gathered are not scored
    let (work, mut per_request): (Vec<Work>, Vec<Vec<u64>>) = work
        .into_iter()
        .zip(per_request)
        .filter(|(w, _)| !w.req.cancelled())
        .unzip();
    if work.is_empty() {
        return 0;
    }

    let t = now();
    // a truncated re-rank still covers the largest topk asked in the batch
    let truncate_to = work
        .iter()
        .map(|w| w.req.topk)
        .fold(truncate_to, usize::max);
    let plan = ctx.models(lane, |m| {
        m.plan_rank(remaining(), work.len(), cands, truncate_to)
    });
    let scores = match plan {
        RankPlan::Skip => None,
        RankPlan::Full | RankPlan::Truncate(_) => {
            if let RankPlan::Truncate(n) = plan {
                per_request.iter_mut().for_each(|ids| ids.truncate(n));
            }
            let s = stages::rank(
                ctx,
                &work,
                &per_request,
                priority,
                cut(ctx.settings.ranker_timeout, remaining()),
            )
            .await;
            if s.is_some() && plan == RankPlan::Full {
                ctx.models(lane, |m| m.rank.observe(work.len(), t.elapsed_since()));
            }
            s
        }
    };
    let rank_time = t.elapsed_since();
    observe(ctx, "rank", rank_time);
    let mut work = work;
    let scores = match scores {
        Some(s) => {
            if matches!(plan, RankPlan::Truncate(_)) {
                work.iter_mut()
                    .for_each(|w| w.degraded.push("rank_truncated"));
            }
            s
        }
        None => {
            work.iter_mut().for_each(|w| w.degraded.push("ranker"));
            ann_order_scores(ctx, &work, &per_request)
        }
    };

    let processed = work.len();
    for ((w, mut ids), mut scores) in work.into_iter().zip(per_request).zip(scores) {
        for stage in &w.degraded {
            ctx.metrics.degraded.with_label_values(&[stage]).inc();
        }
        // an item deleted while the batch ran is never answered: the delete was
        // acknowledged after the overlay took it
        drop_deleted(&ctx.items, &mut ids, &mut scores);
        let items = top_k(&ids, &scores, w.req.topk)
            .into_iter()
            .map(|(id, score)| ScoredItem { id, score })
            .collect();
        let timings = StageTimings {
            queue: dispatched.saturating_duration_since(w.req.received),
            features,
            candidates,
            rank: rank_time,
        };
        let response = RecommendResponse {
            user_id: w.req.user_id.to_string(),
            items,
            variant: w.req.variant.clone(),
            degraded: w.degraded.iter().map(|s| s.to_string()).collect(),
            coverage,
            request_id: w.req.request_id.clone(),
        };
        w.req.answer(Ok(Answer { response, timings }));
    }
    processed
}

/// Inner products of each user with its candidates: the ANN order, as scores.
fn ann_order_scores(ctx: &PipelineCtx, work: &[Work], candidates: &[Vec<u64>]) -> Vec<Vec<f32>> {
    let items = ctx.items.view();
    work.iter()
        .zip(candidates)
        .map(|(w, ids)| {
            ids.iter()
                .map(|&id| {
                    items
                        .get(id)
                        .map_or(f32::MIN, |(v, _)| dot(&w.profile.emb, v))
                })
                .collect()
        })
        .collect()
}

/// Removes the items no longer live from a candidate list and its scores.
fn drop_deleted(items: &Items, ids: &mut Vec<u64>, scores: &mut Vec<f32>) {
    let view = items.view();
    // candidates were live when merged: only an item write since can have changed that
    if view.unchanged() || ids.iter().all(|&id| view.is_live(id)) {
        return;
    }
    let (kept_ids, kept_scores) = (ids.iter().zip(scores.iter()))
        .filter(|(&id, _)| view.is_live(id))
        .map(|(&id, &s)| (id, s))
        .unzip();
    (*ids, *scores) = (kept_ids, kept_scores);
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
