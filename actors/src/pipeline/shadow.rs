//! Shadow runs: after a batch's primary answers have gone, the requests picked for the
//! experiment's shadow variant run again with its plan (candidates, breadth, model) on a
//! task of their own, at a priority below every lane's, and their top-k is compared with
//! the primary answer (`experiments::shadow::ShadowStats`). They run only with spare
//! capacity — no request waiting at the gateway and no other shadow run in flight —
//! else they are shed, and counted; a shadow run never holds a pipeline worker, so it
//! cannot delay or change a primary answer.

use super::{stages, ElapsedSince, PipelineCtx};
use crate::experiments::shadow::ShadowStats;
use crate::experiments::Plan;
use crate::ranker::model::top_k;
use crate::types::Profile;
use recd_runtime::clock::now;
use recd_runtime::compute::Priority;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Time a shadow run may take (it is nobody's answer: a late one is dropped as failed).
const SHADOW_BUDGET: Duration = Duration::from_millis(250);

/// An experiment's shadow variant on this node.
pub struct Shadow {
    /// What it runs.
    pub plan: Plan,
    /// Its comparison with the primary answers.
    pub stats: Arc<ShadowStats>,
    permits: Arc<Semaphore>,
}

impl Shadow {
    /// A shadow of `plan`, one run in flight at a time.
    pub fn new(plan: Plan, stats: Arc<ShadowStats>) -> Self {
        Self {
            plan,
            stats,
            permits: Arc::new(Semaphore::new(1)),
        }
    }
}

/// A primary answer to shadow.
pub(super) struct ShadowCase {
    pub profile: Arc<Profile>,
    /// The primary's top-k ids, best first.
    pub primary: Vec<u64>,
    /// The primary's candidates + ranking time.
    pub took: Duration,
}

/// Starts the shadow run of `cases` if the node has spare capacity; sheds them if not.
pub(super) fn launch(ctx: &Arc<PipelineCtx>, cases: Vec<ShadowCase>) {
    let Some(sh) = &ctx.shadow else {
        return;
    };
    if cases.is_empty() {
        return;
    }
    let waiting: i64 = (ctx.settings.lanes.iter())
        .map(|l| ctx.metrics.queue_depth.with_label_values(&[l]).get())
        .sum();
    let permit = match waiting {
        0 => Arc::clone(&sh.permits).try_acquire_owned().ok(),
        _ => None,
    };
    let Some(permit) = permit else {
        sh.stats.shed(cases.len());
        return;
    };
    let ctx = Arc::clone(ctx);
    tokio::spawn(async move {
        run(&ctx, cases).await;
        drop(permit);
    });
}

async fn run(ctx: &PipelineCtx, cases: Vec<ShadowCase>) {
    let Some(sh) = &ctx.shadow else {
        return;
    };
    let deadline = now() + SHADOW_BUDGET;
    // a lane below every real one: the compute pools serve lanes in order, so every
    // primary job goes first whatever its deadline
    let below_all = ctx.settings.lanes.len();
    let priority = Priority {
        deadline,
        lane: below_all,
        trace: 0,
    };
    let left = || {
        deadline
            .saturating_duration_since(now())
            .max(Duration::from_millis(1))
    };
    let profiles: Vec<Arc<Profile>> = cases.iter().map(|c| Arc::clone(&c.profile)).collect();
    let t = now();
    let gathered = stages::fetch_candidates(ctx, &profiles, &sh.plan, priority, left()).await;
    let Ok((per_request, _)) = gathered else {
        sh.stats.failed(cases.len());
        return;
    };
    let scorer = (&sh.plan.model, sh.plan.cascade.as_ref());
    let scored = stages::rank(ctx, &profiles, &per_request, scorer, priority, left()).await;
    let took = t.elapsed_since();
    let Some((scores, _model)) = scored else {
        sh.stats.failed(cases.len());
        return;
    };
    for ((case, ids), scores) in cases.iter().zip(&per_request).zip(&scores) {
        let shadow: Vec<u64> = (top_k(ids, scores, case.primary.len()).into_iter())
            .map(|(id, _)| id)
            .collect();
        sh.stats.record(&case.primary, &shadow, (case.took, took));
    }
}
