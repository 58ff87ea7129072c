//! The stage calls of a batch: one lookup per owning feature shard, one search per index
//! shard (scatter) with the merge (gather), one scoring call per batch.

use super::{PipelineCtx, Work};
use crate::candidates::index::{merge, Candidate};
use crate::candidates::shard::IndexShardMessage;
use crate::features::profile::Profile;
use crate::features::{shard::FeatureShardMessage, shard_of};
use crate::ranker::actor::{RankerMessage, ScoreRequest};
use ractor::rpc::CallResult;
use recd_runtime::compute::Priority;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One lookup per owning feature shard, each user with its lane's maximum profile age;
/// users whose shard fails, or who get no profile (not cached young enough while
/// `fetch` is off), keep the default profile and are marked degraded.
pub(super) async fn fetch_profiles(
    ctx: &PipelineCtx,
    work: &mut [Work],
    fetch: bool,
    deadline: Instant,
    timeout: Duration,
) {
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
            let users: Vec<(Arc<str>, Duration)> = idx
                .iter()
                .map(|&i| {
                    (
                        Arc::clone(&work[i].req.user_id),
                        ctx.settings.profile_max_age[work[i].req.lane],
                    )
                })
                .collect();
            let actor = ctx.features.get(s);
            async move {
                let Some(actor) = actor else { return (s, None) };
                let r = actor
                    .call(
                        |reply| FeatureShardMessage::Lookup {
                            users,
                            fetch,
                            deadline,
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
        let profiles = result.filter(|p: &Vec<Option<Arc<Profile>>>| p.len() == idx.len());
        for (n, &i) in idx.iter().enumerate() {
            match profiles.as_ref().and_then(|p| p[n].clone()) {
                Some(p) => work[i].profile = p,
                None => work[i].degraded.push("features"),
            }
        }
    }
}

/// Scatter one batched search to every index shard and gather the merged candidates of
/// each request, with the fraction of shards that answered. `None` when none did.
pub(super) async fn fetch_candidates(
    ctx: &PipelineCtx,
    work: &[Work],
    priority: Priority,
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
                    |reply| IndexShardMessage::Search {
                        queries,
                        k,
                        priority,
                        reply,
                    },
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
pub(super) async fn rank(
    ctx: &PipelineCtx,
    work: &[Work],
    candidates: &[Vec<u64>],
    priority: Priority,
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
            |reply| RankerMessage::Score {
                requests,
                priority,
                reply,
            },
            Some(timeout),
        )
        .await;
    success(r)?
        .ok()
        .filter(|s: &Vec<Vec<f32>>| s.len() == work.len())
}

fn success<T, M>(r: Result<CallResult<T>, ractor::MessagingErr<M>>) -> Option<T> {
    match r {
        Ok(CallResult::Success(v)) => Some(v),
        _ => None,
    }
}
