//! The stage calls of a batch: one lookup per owning feature shard, one search per index
//! shard (scatter) with the merge (gather), one scoring call per batch. Each goes through
//! the `Router`, which picks a local or remote replica.

use super::{PipelineCtx, Work};
use crate::candidates::index::merge;
use crate::experiments::Plan;
use crate::features::shard_of;
use crate::types::{Candidate, Cascade, ModelRef, Profile, ScoreRequest};
use recd_runtime::compute::Priority;
use recd_runtime::{ErrorCode, RecdError};
use std::sync::Arc;
use std::time::Duration;

/// One lookup per owning feature shard, each user with its lane's maximum profile age;
/// users whose shard fails, or who get no profile (not cached young enough while
/// `fetch` is off), keep the default profile and are marked degraded.
pub(super) async fn fetch_profiles(
    ctx: &PipelineCtx,
    work: &mut [Work],
    fetch: bool,
    priority: Priority,
    timeout: Duration,
) {
    let shards = ctx.router.shards().features;
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); shards];
    for (i, w) in work.iter().enumerate() {
        by_shard[shard_of(&w.req.user_id, shards)].push(i);
    }
    let calls = by_shard
        .iter()
        .enumerate()
        .filter(|(_, idx)| !idx.is_empty())
        .map(|(s, idx)| {
            let users: Vec<(Arc<str>, Duration)> = idx
                .iter()
                .map(|&i| {
                    (
                        Arc::clone(&work[i].req.user_id),
                        ctx.settings.profile_max_age[work[i].req.lane],
                    )
                })
                .collect();
            async move {
                let r = (ctx.router)
                    .lookup(s, users, fetch, priority, timeout)
                    .await;
                (s, r)
            }
        });
    // the router answers one profile per user asked (or nothing)
    for (s, profiles) in futures_util::future::join_all(calls).await {
        for (n, &i) in by_shard[s].iter().enumerate() {
            match profiles.as_ref().and_then(|p| p.get(n).cloned().flatten()) {
                Some(p) => work[i].profile = p,
                None => work[i].degraded.push("features"),
            }
        }
    }
}

/// Scatter one batched search to every index shard and gather the merged candidates of
/// each request (less the user's recent items), with the fraction of shards that answered. When none did: a deadline
/// error if every shard ran out of time, else unavailable.
pub(super) async fn fetch_candidates(
    ctx: &PipelineCtx,
    profiles: &[Arc<Profile>],
    plan: &Plan,
    priority: Priority,
    timeout: Duration,
) -> Result<(Vec<Vec<u64>>, f32), RecdError> {
    let dim = ctx.items.schema().dim;
    let mut queries = Vec::with_capacity(profiles.len() * dim);
    for p in profiles {
        queries.extend_from_slice(&p.emb);
    }
    let queries = Arc::new(queries);
    let (k, ef) = (plan.per_shard_k, plan.ef);
    let shards = ctx.router.shards().index;
    let calls = (0..shards).map(|s| {
        let queries = Arc::clone(&queries);
        async move {
            ctx.router
                .search(s, (queries, dim), (k, ef), priority, timeout)
                .await
        }
    });
    let (answered, failed): (Vec<_>, Vec<_>) = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .partition(Result::is_ok);
    let answered: Vec<Vec<Vec<Candidate>>> = answered.into_iter().flatten().collect();
    if answered.is_empty() {
        let late =
            (failed.iter()).all(|r| matches!(r, Err(e) if e.code == ErrorCode::DeadlineExceeded));
        return Err(match late {
            true => RecdError::deadline("no index shard answered within the budget"),
            false => RecdError::unavailable("no index shard answered"),
        });
    }
    let coverage = answered.len() as f32 / shards as f32;
    let mut per_shard: Vec<std::vec::IntoIter<Vec<Candidate>>> =
        answered.into_iter().map(Vec::into_iter).collect();
    let items = ctx.items.view();
    let merged = profiles
        .iter()
        .map(|p| {
            // what the user interacted with lately is never recommended back, nor an
            // item deleted since the index shard answered
            let recent = &p.recent;
            let lists = per_shard
                .iter_mut()
                .filter_map(Iterator::next)
                .map(|mut l| {
                    l.retain(|c| !recent.contains(&c.id) && items.is_live(c.id));
                    l
                });
            merge(lists, plan.candidates)
                .into_iter()
                .map(|c| c.id)
                .collect()
        })
        .collect();
    Ok((merged, coverage))
}

/// One scoring call with `scorer` (a model, through a cascade when given); `None` when
/// no ranker answered in time.
pub(super) async fn rank(
    ctx: &PipelineCtx,
    profiles: &[Arc<Profile>],
    candidates: &[Vec<u64>],
    scorer: (&ModelRef, Option<&Cascade>),
    priority: Priority,
    timeout: Duration,
) -> Option<(Vec<Vec<f32>>, Arc<str>)> {
    let requests: Vec<ScoreRequest> = profiles
        .iter()
        .zip(candidates)
        .map(|(p, c)| ScoreRequest {
            profile: Arc::clone(p),
            candidates: c.clone(),
        })
        .collect();
    (ctx.router)
        .score(Arc::new(requests), scorer, priority, timeout)
        .await
}
