//! The flow of one micro-batch through the stages, run by a pool of `PipelineWorker`
//! actors (one batch per worker at a time; the gateway bounds batches in flight).
//!
//! ```text
//! Run(batch) ─► drop cancelled / expired
//!            ─► FeatureShard[f] Lookup      one call per owning shard   (late → default profile)
//!            ─► IndexShard[0..S] Search     one call per shard, k' each (late → coverage < 1)
//!            ─► merge top `candidates` per request
//!            ─► Ranker Score                one call per batch          (late → ANN order)
//!            ─► top-k per request, answer each reply port
//! ```
//!
//! Every call has a timeout: the stage's own, cut to the batch's earliest remaining
//! budget. A fallback is counted in `recd_degraded_total` and named in `degraded`.

use crate::candidates::index::{merge, Candidate};
use crate::candidates::shard::IndexShardMessage;
use crate::data::{dot, Catalogue};
use crate::features::profile::{Profile, ProfileSource};
use crate::features::{shard::FeatureShardMessage, shard_of};
use crate::gateway::GatewayMessage;
use crate::ranker::actor::{RankerMessage, ScoreRequest};
use crate::ranker::model::top_k;
use crate::request::{Answer, PendingRequest, StageTimings};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use recd_runtime::api::{RecommendResponse, ScoredItem};
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::{PoolSlots, WorkerFactory};
use recd_runtime::RecdError;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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
        /// Who to tell when the batch is done.
        gateway: ActorRef<GatewayMessage>,
    },
}

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
}

/// What every pipeline worker shares.
pub struct PipelineCtx {
    /// Feature shards by shard number.
    pub features: Arc<PoolSlots<FeatureShardMessage>>,
    /// Index shards by shard number.
    pub index: Arc<PoolSlots<IndexShardMessage>>,
    /// The ranker pool.
    pub ranker: Arc<PoolSlots<RankerMessage>>,
    /// Items (for the ANN-order fallback scores).
    pub catalogue: Arc<Catalogue>,
    /// The default profile for fallbacks.
    pub source: ProfileSource,
    /// Timeouts and sizes.
    pub settings: PipelineSettings,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    next_ranker: AtomicUsize,
}

impl PipelineCtx {
    /// Bundles the pipeline's dependencies.
    pub fn new(
        features: Arc<PoolSlots<FeatureShardMessage>>,
        index: Arc<PoolSlots<IndexShardMessage>>,
        ranker: Arc<PoolSlots<RankerMessage>>,
        catalogue: Arc<Catalogue>,
        source: ProfileSource,
        settings: PipelineSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            features,
            index,
            ranker,
            catalogue,
            source,
            settings,
            metrics,
            next_ranker: AtomicUsize::new(0),
        }
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

/// Tells the gateway the worker is free again, also when the batch panics.
struct DoneGuard {
    gateway: ActorRef<GatewayMessage>,
    worker: usize,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.gateway.cast(GatewayMessage::BatchDone {
            worker: self.worker,
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
            gateway,
        } = msg;
        let _done = DoneGuard { gateway, worker };
        ctx.metrics.batches_in_flight.inc();
        run_batch(ctx, batch, dispatched).await;
        ctx.metrics.batches_in_flight.dec();
        Ok(())
    }
}

/// Per-request working state inside a batch.
struct Work {
    req: PendingRequest,
    profile: Arc<Profile>,
    degraded: Vec<&'static str>,
}

/// Runs one batch and answers every request in it.
pub async fn run_batch(ctx: &PipelineCtx, batch: Vec<PendingRequest>, dispatched: Instant) {
    let now = Instant::now();
    let mut work = Vec::with_capacity(batch.len());
    for req in batch {
        if req.cancelled() {
            continue;
        }
        if req.deadline <= now {
            req.answer(Err(RecdError::deadline(
                "latency budget spent before processing",
            )));
            continue;
        }
        work.push(Work {
            req,
            profile: ctx.source.default_profile(),
            degraded: Vec::new(),
        });
    }
    if work.is_empty() {
        return;
    }
    let earliest = work.iter().map(|w| w.req.deadline).min().unwrap_or(now);
    let budget = |stage: Duration| {
        stage
            .min(earliest.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1))
    };

    let t = Instant::now();
    fetch_profiles(ctx, &mut work, budget(ctx.settings.features_timeout)).await;
    let features = t.elapsed();
    observe(ctx, "features", features);

    let t = Instant::now();
    let gathered = fetch_candidates(ctx, &work, budget(ctx.settings.index_timeout)).await;
    let candidates = t.elapsed();
    observe(ctx, "candidates", candidates);
    let Some((per_request, coverage)) = gathered else {
        ctx.metrics
            .degraded
            .with_label_values(&["candidates"])
            .inc_by(work.len() as u64);
        for w in work {
            w.req
                .answer(Err(RecdError::unavailable("no index shard answered")));
        }
        return;
    };
    if coverage < 1.0 {
        for w in &mut work {
            w.degraded.push("candidates");
        }
    }

    let t = Instant::now();
    let scores = rank(
        ctx,
        &work,
        &per_request,
        budget(ctx.settings.ranker_timeout),
    )
    .await;
    let rank_time = t.elapsed();
    observe(ctx, "rank", rank_time);

    let scores = match scores {
        Some(s) => s,
        None => {
            for w in &mut work {
                w.degraded.push("ranker");
            }
            work.iter()
                .zip(&per_request)
                .map(|(w, ids)| {
                    ids.iter()
                        .map(|&id| dot(&w.profile.emb, ctx.catalogue.item(id as usize)))
                        .collect()
                })
                .collect()
        }
    };

    for ((w, ids), scores) in work.into_iter().zip(per_request).zip(scores) {
        for stage in &w.degraded {
            ctx.metrics.degraded.with_label_values(&[stage]).inc();
        }
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
}

fn observe(ctx: &PipelineCtx, stage: &str, d: Duration) {
    ctx.metrics
        .stage_duration
        .with_label_values(&[stage])
        .observe(d.as_secs_f64());
}

/// One lookup per owning feature shard; users of a shard that fails keep the default
/// profile and are marked degraded.
async fn fetch_profiles(ctx: &PipelineCtx, work: &mut [Work], timeout: Duration) {
    let shards = ctx.features.len();
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); shards];
    for (i, w) in work.iter().enumerate() {
        by_shard[shard_of(&w.req.user_id, shards)].push(i);
    }
    let calls = by_shard
        .iter()
        .enumerate()
        .filter(|(_, idx)| !idx.is_empty())
        .map(|(s, idx)| {
            let ids: Vec<Arc<str>> = idx
                .iter()
                .map(|&i| Arc::clone(&work[i].req.user_id))
                .collect();
            let actor = ctx.features.get(s);
            async move {
                let Some(actor) = actor else { return (s, None) };
                let r = actor
                    .call(
                        |reply| FeatureShardMessage::Lookup {
                            user_ids: ids,
                            reply,
                        },
                        Some(timeout),
                    )
                    .await;
                (s, success(r))
            }
        });
    for (s, result) in futures_util::future::join_all(calls).await {
        let idx = &by_shard[s];
        match result {
            Some(profiles) if profiles.len() == idx.len() => {
                for (&i, p) in idx.iter().zip(profiles) {
                    work[i].profile = p;
                }
            }
            _ => {
                for &i in idx {
                    work[i].degraded.push("features");
                }
            }
        }
    }
}

/// Scatter one batched search to every index shard and gather the merged candidates of
/// each request, with the fraction of shards that answered. `None` when none did.
async fn fetch_candidates(
    ctx: &PipelineCtx,
    work: &[Work],
    timeout: Duration,
) -> Option<(Vec<Vec<u64>>, f32)> {
    let mut queries = Vec::with_capacity(work.len() * crate::data::DIM);
    for w in work {
        queries.extend_from_slice(&w.profile.emb);
    }
    let queries = Arc::new(queries);
    let k = ctx.settings.per_shard_k;
    let shards = ctx.index.len();
    let calls = (0..shards).map(|s| {
        let actor = ctx.index.get(s);
        let queries = Arc::clone(&queries);
        async move {
            let actor = actor?;
            let r = actor
                .call(
                    |reply| IndexShardMessage::Search { queries, k, reply },
                    Some(timeout),
                )
                .await;
            success(r)?
                .ok()
                .filter(|lists: &Vec<Vec<Candidate>>| lists.len() == work.len())
        }
    });
    let answered: Vec<Vec<Vec<Candidate>>> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .flatten()
        .collect();
    if answered.is_empty() {
        return None;
    }
    let coverage = answered.len() as f32 / shards as f32;
    let mut per_shard: Vec<std::vec::IntoIter<Vec<Candidate>>> =
        answered.into_iter().map(Vec::into_iter).collect();
    let merged = (0..work.len())
        .map(|_| {
            let lists = per_shard.iter_mut().filter_map(Iterator::next);
            merge(lists, ctx.settings.candidates)
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .collect();
    Some((merged, coverage))
}

/// One scoring call for the whole batch; `None` when no ranker answered in time.
async fn rank(
    ctx: &PipelineCtx,
    work: &[Work],
    candidates: &[Vec<u64>],
    timeout: Duration,
) -> Option<Vec<Vec<f32>>> {
    let hint = ctx.next_ranker.fetch_add(1, Ordering::Relaxed);
    let actor = ctx.ranker.pick(hint)?;
    let requests: Vec<ScoreRequest> = work
        .iter()
        .zip(candidates)
        .map(|(w, c)| ScoreRequest {
            profile: Arc::clone(&w.profile),
            candidates: c.clone(),
        })
        .collect();
    let requests = Arc::new(requests);
    let r = actor
        .call(
            |reply| RankerMessage::Score { requests, reply },
            Some(timeout),
        )
        .await;
    success(r)?.ok()
}

fn success<T, M>(r: Result<CallResult<T>, ractor::MessagingErr<M>>) -> Option<T> {
    match r {
        Ok(CallResult::Success(v)) => Some(v),
        _ => None,
    }
}
