//! The second half of a batch, per variant: the requests of one variant gather their
//! candidates (the variant's count and search breadth), are scored by the variant's
//! model, and are answered. A batch with requests of both variants runs both halves
//! concurrently.

use super::ladder::RankPlan;
use super::shadow::ShadowCase;
use super::{cut, observe, stages, ElapsedSince, PipelineCtx, Work};
use crate::data::dot;
use crate::experiments::Plan;
use crate::items::Items;
use crate::ranker::model::top_k;
use crate::request::{Answer, StageTimings};
use crate::types::Profile;
use recd_runtime::api::{RecommendResponse, ScoredItem};
use recd_runtime::clock::now;
use recd_runtime::compute::Priority;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every group of a batch shares.
pub(super) struct Shared {
    /// The batch's lane (its time models decide the rungs).
    pub lane: usize,
    /// The batch's priority on the compute pools.
    pub priority: Priority,
    /// The earliest deadline in the batch.
    pub earliest: Instant,
    /// When the gateway dispatched it.
    pub dispatched: Instant,
    /// How long the feature lookups took.
    pub features: Duration,
}

/// Candidates, ranking and answers for one variant's requests; returns how many went
/// through the whole pipeline, and the answers to shadow.
pub(super) async fn serve_group(
    ctx: &PipelineCtx,
    plan_index: usize,
    work: Vec<Work>,
    shared: &Shared,
) -> (usize, Vec<ShadowCase>) {
    let plan: &Plan = &ctx.plans[plan_index];
    let Shared {
        lane,
        priority,
        earliest,
        ..
    } = *shared;
    let remaining = || earliest.saturating_duration_since(now());
    let (cands, b) = (plan.candidates, work.len());
    let truncate_to = ctx.settings.truncate_to.min(cands);

    let t = now();
    let budget = ctx.plan_models(lane, plan_index, |m| {
        m.candidates_budget(remaining(), b, cands, truncate_to)
    });
    let timeout = cut(ctx.settings.index_timeout, budget);
    let profiles: Vec<Arc<Profile>> = work.iter().map(|w| Arc::clone(&w.profile)).collect();
    let gathered = stages::fetch_candidates(ctx, &profiles, plan, priority, timeout).await;
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
            return (0, Vec::new());
        }
    };
    let mut work = work;
    if coverage < 1.0 {
        work.iter_mut().for_each(|w| w.degraded.push("candidates"));
    } else {
        ctx.plan_models(lane, plan_index, |m| m.candidates.observe(b, candidates));
    }
    // clients that left while their candidates were gathered are not scored
    let (work, mut per_request): (Vec<Work>, Vec<Vec<u64>>) = work
        .into_iter()
        .zip(per_request)
        .filter(|(w, _)| !w.req.cancelled())
        .unzip();
    if work.is_empty() {
        return (0, Vec::new());
    }

    let t = now();
    // a truncated re-rank still covers the largest topk asked in the batch
    let truncate_to = work
        .iter()
        .map(|w| w.req.topk)
        .fold(truncate_to, usize::max);
    let rank_plan = ctx.plan_models(lane, plan_index, |m| {
        let fallback = ctx.fallback.is_some();
        m.plan_rank(remaining(), work.len(), (cands, truncate_to), fallback)
    });
    // what scores: the variant's model (every candidate or the truncated ones), the
    // fallback model (the student rung), or nothing (ANN order)
    let scorer = match (rank_plan, &ctx.fallback) {
        (RankPlan::Full | RankPlan::Truncate(_), _) => Some((&plan.model, plan.cascade.as_ref())),
        (RankPlan::Fallback, Some(fallback)) => Some((fallback, None)),
        (RankPlan::Fallback, None) | (RankPlan::Skip, _) => None,
    };
    if let RankPlan::Truncate(n) = rank_plan {
        per_request.iter_mut().for_each(|ids| ids.truncate(n));
    }
    let scored = match scorer {
        None => None,
        Some(scorer) => {
            let timeout = cut(ctx.settings.ranker_timeout, remaining());
            let profiles: Vec<Arc<Profile>> = work.iter().map(|w| Arc::clone(&w.profile)).collect();
            let s = stages::rank(ctx, &profiles, &per_request, scorer, priority, timeout).await;
            if s.is_some() {
                let took = t.elapsed_since();
                ctx.plan_models(lane, plan_index, |m| match rank_plan {
                    RankPlan::Full => m.rank.observe(work.len(), took),
                    RankPlan::Fallback => m.fallback.observe(work.len(), took),
                    RankPlan::Truncate(_) | RankPlan::Skip => {}
                });
            }
            s
        }
    };
    let rank_time = t.elapsed_since();
    observe(ctx, "rank", rank_time);
    let mut work = work;
    let (scores, model) = match scored {
        Some((s, model)) => {
            let rung = match rank_plan {
                RankPlan::Truncate(_) => Some("rank_truncated"),
                RankPlan::Fallback => Some("rank_student"),
                _ => None,
            };
            if let Some(rung) = rung {
                work.iter_mut().for_each(|w| w.degraded.push(rung));
            }
            (s, Some(model.to_string()))
        }
        None => {
            work.iter_mut().for_each(|w| w.degraded.push("ranker"));
            (ann_order_scores(ctx, &work, &per_request), None)
        }
    };

    let processed = work.len();
    let mut shadowed = Vec::new();
    for ((w, mut ids), mut scores) in work.into_iter().zip(per_request).zip(scores) {
        for stage in &w.degraded {
            ctx.metrics.degraded.with_label_values(&[stage]).inc();
        }
        // an item deleted while the batch ran is never answered: the delete was
        // acknowledged after the overlay took it
        drop_deleted(&ctx.items, &mut ids, &mut scores);
        let items: Vec<ScoredItem> = top_k(&ids, &scores, w.req.topk)
            .into_iter()
            .map(|(id, score)| ScoredItem { id, score })
            .collect();
        if w.req.shadow && ctx.shadow.is_some() {
            shadowed.push(ShadowCase {
                profile: Arc::clone(&w.profile),
                primary: items.iter().map(|i| i.id).collect(),
                took: candidates + rank_time,
            });
        }
        let timings = StageTimings {
            queue: (shared.dispatched).saturating_duration_since(w.req.received),
            features: shared.features,
            candidates,
            rank: rank_time,
        };
        let response = RecommendResponse {
            user_id: w.req.user_id.to_string(),
            items,
            variant: w.req.variant.to_string(),
            model: model.clone(),
            degraded: w.degraded.iter().map(|s| s.to_string()).collect(),
            coverage,
            request_id: w.req.request_id.clone(),
        };
        let batch_trace = shared.priority.trace;
        w.req.answer(Ok(Answer {
            response,
            timings,
            batch_trace,
        }));
    }
    (processed, shadowed)
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
