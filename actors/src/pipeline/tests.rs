//! One batch through `run_batch` over a fake seam: what each request gets back when the
//! stages answer, fail or are late.

use super::*;
use crate::data::dot;
use crate::remote::router::{Replica, Replicas, ShardCounts};
use crate::request::Answer;
use crate::stage::{self, Call, Stage, Target};
use crate::types::Candidate;
use futures_util::future::BoxFuture;
use recd_runtime::ErrorCode;
use std::collections::HashSet;
use tokio::sync::oneshot;

const INDEX_SHARDS: usize = 2;

/// A whole cluster in one object: answers every call, except the targets told to fail
/// (at once) or to hang (past any timeout).
struct FakeStages {
    source: ProfileSource,
    failing: HashSet<Target>,
    hanging: HashSet<Target>,
}

impl Stage for FakeStages {
    fn call<'a>(
        &'a self,
        call: &'a Call,
        _: Priority,
        _: Duration,
    ) -> BoxFuture<'a, Result<stage::Answer, RecdError>> {
        Box::pin(async move {
            if self.failing.contains(&call.target()) {
                return Err(RecdError::unavailable("fake failure"));
            }
            if self.hanging.contains(&call.target()) {
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            Ok(match call {
                Call::Lookup { users, .. } => stage::Answer::Profiles(
                    (users.iter())
                        .map(|(u, _)| Some(self.source.profile(u)))
                        .collect(),
                ),
                // shard s holds items s, s + 2, s + 4, ...: ten each, closer as ids grow
                Call::Search {
                    shard,
                    queries,
                    dim,
                    k,
                    ..
                } => {
                    let list: Vec<Candidate> = (0..(*k).min(10))
                        .map(|i| {
                            let id = (shard + INDEX_SHARDS * i) as u64;
                            Candidate {
                                id,
                                distance: -(id as f32),
                            }
                        })
                        .collect();
                    stage::Answer::Candidates(vec![list; queries.len() / dim])
                }
                // the ranker prefers small ids: the reverse of the ANN order
                Call::Score {
                    requests, model, ..
                } => stage::Answer::Scores {
                    scores: (requests.iter())
                        .map(|r| r.candidates.iter().map(|&id| 100.0 - id as f32).collect())
                        .collect(),
                    model: format!("{}@1", model.name).into(),
                },
                Call::Items { changes, .. } => stage::Answer::Applied(changes.len()),
                Call::Write { ops, .. } => {
                    stage::Answer::Written(vec![crate::types::WriteOutcome::Applied; ops.len()])
                }
            })
        })
    }
}

impl Replicas for FakeStages {
    fn replicas(&self, _: Target) -> Vec<Replica> {
        vec![Replica {
            stage: Arc::new(FakeStages {
                source: self.source.clone(),
                failing: self.failing.clone(),
                hanging: self.hanging.clone(),
            }),
            local: true,
            in_flight: 0,
            ewma_us: 0,
        }]
    }
}

struct Batch {
    _dir: tempfile::TempDir,
    ctx: Arc<PipelineCtx>,
}

fn batch_ctx(failing: &[Target]) -> Batch {
    faulty_ctx(failing, &[])
}

fn faulty_ctx(failing: &[Target], hanging: &[Target]) -> Batch {
    let (dir, cat) = crate::test_data::catalogue(100);
    let source = ProfileSource::new(&cat);
    let fakes = FakeStages {
        source: source.clone(),
        failing: failing.iter().copied().collect(),
        hanging: hanging.iter().copied().collect(),
    };
    let metrics = Arc::new(Metrics::new());
    let shards = ShardCounts {
        features: 2,
        index: INDEX_SHARDS,
    };
    let router = Router::new(Arc::new(fakes), shards, None, Arc::clone(&metrics));
    let settings = PipelineSettings {
        features_timeout: Duration::from_millis(50),
        index_timeout: Duration::from_millis(50),
        ranker_timeout: Duration::from_millis(50),
        truncate_to: 8,
        profile_max_age: vec![Duration::from_secs(60); 3],
        lanes: vec!["critical".into(), "default".into(), "background".into()],
        refuse_early: true,
    };
    let items = Arc::new(crate::items::Items::new(Arc::new(cat)));
    let plan = crate::experiments::Plan {
        variant: "A".into(),
        model: crate::types::ModelRef::latest("ranker"),
        candidates: 8,
        per_shard_k: 10,
        ef: 10,
        cascade: None,
    };
    let ctx = PipelineCtx::new(
        Arc::new(router),
        items,
        source,
        settings,
        vec![plan],
        metrics,
    );
    Batch {
        _dir: dir,
        ctx: Arc::new(ctx),
    }
}

type Reply = oneshot::Receiver<Result<Answer, RecdError>>;

fn request(user: &str, topk: usize, budget: Duration) -> (PendingRequest, Reply) {
    let (tx, rx) = oneshot::channel();
    let received = now();
    let req = PendingRequest {
        request_id: user.into(),
        trace: 7,
        user_id: Arc::from(user),
        topk,
        lane: 0,
        variant: "A".into(),
        shadow: false,
        received,
        deadline: received + budget,
        reply: tx,
    };
    (req, rx)
}

fn ids(answer: &Answer) -> Vec<u64> {
    answer.response.items.iter().map(|i| i.id).collect()
}

const BUDGET: Duration = Duration::from_secs(1);

#[tokio::test]
async fn every_request_gets_its_own_ranked_answer() {
    let b = batch_ctx(&[]);
    let (r1, rx1) = request("u1", 3, BUDGET);
    let (r2, rx2) = request("u2", 5, BUDGET);
    assert_eq!(run_batch(&b.ctx, vec![r1, r2], now()).await, 2);
    for (rx, user, topk) in [(rx1, "u1", 3), (rx2, "u2", 5)] {
        let a = rx.await.unwrap().unwrap();
        assert_eq!(a.response.user_id, user);
        assert_eq!(a.response.coverage, 1.0);
        assert!(a.response.degraded.is_empty(), "{:?}", a.response.degraded);
        // the merge keeps the 8 closest (ids 12..=19), the ranker puts the smallest first
        assert_eq!(ids(&a), (12..12 + topk as u64).collect::<Vec<_>>());
        let scores: Vec<f32> = a.response.items.iter().map(|i| i.score).collect();
        assert_eq!(scores[0], 100.0 - 12.0);
    }
}

#[tokio::test]
async fn a_missing_index_shard_is_merged_around_and_reported() {
    let b = batch_ctx(&[Target::Index(1)]);
    let (r, rx) = request("u1", 3, BUDGET);
    run_batch(&b.ctx, vec![r], now()).await;
    let a = rx.await.unwrap().unwrap();
    assert_eq!(a.response.coverage, 0.5);
    assert_eq!(a.response.degraded, vec!["candidates"]);
    assert!(
        ids(&a).iter().all(|id| id % 2 == 0),
        "only shard 0's items: {:?}",
        ids(&a)
    );
}

#[tokio::test]
async fn a_failed_ranker_returns_the_ann_order() {
    let b = batch_ctx(&[Target::Ranker]);
    let (r, rx) = request("u1", 4, BUDGET);
    run_batch(&b.ctx, vec![r], now()).await;
    let a = rx.await.unwrap().unwrap();
    assert_eq!(a.response.degraded, vec!["ranker"]);
    let scores: Vec<f32> = a.response.items.iter().map(|i| i.score).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let profile = b.ctx.source.profile("u1");
    let first = a.response.items[0].id as usize;
    assert_eq!(
        scores[0],
        dot(&profile.emb, b.ctx.items.base().item(first)),
        "scored by the inner product"
    );
}

#[tokio::test]
async fn a_failed_feature_shard_serves_the_default_profile() {
    let shard_of_u1 = crate::features::shard_of("u1", 2);
    let b = batch_ctx(&[Target::Features(shard_of_u1)]);
    let other = (0..100)
        .map(|i| format!("u{i}"))
        .find(|u| crate::features::shard_of(u, 2) != shard_of_u1)
        .unwrap();
    let (r1, rx1) = request("u1", 3, BUDGET);
    let (r2, rx2) = request(&other, 3, BUDGET);
    run_batch(&b.ctx, vec![r1, r2], now()).await;
    assert_eq!(
        rx1.await.unwrap().unwrap().response.degraded,
        vec!["features"]
    );
    assert!(rx2.await.unwrap().unwrap().response.degraded.is_empty());
}

#[tokio::test]
async fn spent_and_abandoned_requests_are_not_processed() {
    let b = batch_ctx(&[]);
    let (late, late_rx) = request("u1", 3, Duration::ZERO);
    let (gone, gone_rx) = request("u2", 3, BUDGET);
    drop(gone_rx);
    let (live, live_rx) = request("u3", 3, BUDGET);
    assert_eq!(run_batch(&b.ctx, vec![late, gone, live], now()).await, 1);
    let e = late_rx.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::DeadlineExceeded);
    assert!(live_rx.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_request_the_batch_cannot_serve_is_refused_alone() {
    let b = batch_ctx(&[]);
    // far less than the candidates stage is predicted to take (1 ms before any batch)
    let (hopeless, hopeless_rx) = request("u1", 3, Duration::from_micros(200));
    let (fine, fine_rx) = request("u2", 3, BUDGET);
    assert_eq!(run_batch(&b.ctx, vec![hopeless, fine], now()).await, 1);
    let e = hopeless_rx.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::DeadlineExceeded);
    assert!(
        e.message.starts_with("cannot meet the deadline"),
        "{}",
        e.message
    );
    let a = fine_rx.await.unwrap().unwrap();
    assert!(
        a.response.degraded.is_empty(),
        "its budget was not cut: {:?}",
        a.response.degraded
    );
    let shed = b
        .ctx
        .metrics
        .shed
        .with_label_values(&["critical", "cannot_meet_deadline"]);
    assert_eq!(shed.get(), 1);
}

#[tokio::test]
async fn without_any_candidates_late_shards_are_504_and_missing_ones_503() {
    let all = [Target::Index(0), Target::Index(1)];
    let late = faulty_ctx(&[], &all);
    let (r, rx) = request("u1", 3, BUDGET);
    run_batch(&late.ctx, vec![r], now()).await;
    let e = rx.await.unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::DeadlineExceeded, "{}", e.message);

    let down = batch_ctx(&all);
    let (r, rx) = request("u1", 3, BUDGET);
    run_batch(&down.ctx, vec![r], now()).await;
    assert_eq!(rx.await.unwrap().unwrap_err().code, ErrorCode::Unavailable);
}

#[tokio::test]
async fn a_budget_short_of_the_model_takes_the_student_rung() {
    let mut b = batch_ctx(&[]);
    let student = crate::types::ModelRef::latest("student");
    Arc::get_mut(&mut b.ctx).unwrap().fallback = Some(student);
    // the variant's model is known to take a second, the student a microsecond
    b.ctx.models(0, |m| {
        m.rank.observe(1, Duration::from_secs(1));
        m.fallback.observe(1, Duration::from_micros(1));
    });
    let (r, rx) = request("u1", 3, Duration::from_millis(200));
    run_batch(&b.ctx, vec![r], now()).await;
    let a = rx.await.unwrap().unwrap();
    assert_eq!(a.response.degraded, vec!["rank_student"]);
    assert_eq!(a.response.model.as_deref(), Some("student@1"));
    assert_eq!(
        ids(&a),
        (12..15).collect::<Vec<_>>(),
        "scored, not ANN order"
    );
    // without a fallback the same budget truncates to nothing left to cut: ANN order
    let plain = batch_ctx(&[]);
    plain
        .ctx
        .models(0, |m| m.rank.observe(1, Duration::from_secs(1)));
    let (r, rx) = request("u1", 3, Duration::from_millis(200));
    run_batch(&plain.ctx, vec![r], now()).await;
    let a = rx.await.unwrap().unwrap();
    assert_eq!(a.response.degraded, vec!["ranker"]);
    assert_eq!(a.response.model, None);
}
