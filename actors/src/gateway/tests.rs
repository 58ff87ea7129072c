//! Gateway rules under paused tokio time, with a recording stand-in for the pipeline.

use super::*;
use crate::request::{Answer, StageTimings};
use recd_runtime::api::RecommendResponse;
use recd_runtime::clock::now;
use recd_runtime::config::GatewayConfig;
use recd_runtime::pool::{PoolArgs, PoolSupervisor, RestartPolicy};
use std::sync::Mutex;
use tokio::sync::oneshot;

const MS: Duration = Duration::from_millis(1);

/// What the stand-in pipeline saw: (dispatch time, user ids) per batch.
type Seen = Arc<Mutex<Vec<(Instant, Vec<String>)>>>;

#[derive(Clone)]
struct FakePipeline {
    seen: Seen,
    took: Duration,
}

impl Actor for FakePipeline {
    type Msg = PipelineMessage;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let PipelineMessage::Run {
            batch,
            worker,
            done,
            ..
        } = msg;
        let ids = batch.iter().map(|r| r.user_id.to_string()).collect();
        self.seen.lock().unwrap().push((now(), ids));
        tokio::time::sleep(self.took).await;
        let size = batch.len();
        let lane = batch.iter().map(|r| r.lane).min().unwrap_or(0);
        for req in batch {
            let response = RecommendResponse {
                user_id: req.user_id.to_string(),
                items: vec![],
                variant: "A".into(),
                model: None,
                degraded: vec![],
                coverage: 1.0,
                request_id: req.request_id.clone(),
            };
            req.answer(Ok(Answer {
                response,
                timings: StageTimings::default(),
                batch_trace: 0,
            }));
        }
        let _ = done.send_message(BatchDone {
            worker,
            lane,
            size,
            took: self.took,
        });
        Ok(())
    }
}

impl WorkerFactory for FakePipeline {
    type Worker = FakePipeline;
    fn make(&self, _: usize) -> (FakePipeline, ()) {
        (self.clone(), ())
    }
}

struct Harness {
    gateway: ActorRef<GatewayMessage>,
    seen: Seen,
    metrics: Arc<Metrics>,
    saturation: Arc<LaneSaturation>,
}

async fn start(config: GatewayConfig, took: Duration) -> Harness {
    let seen: Seen = Arc::default();
    let metrics = Arc::new(Metrics::new());
    let workers = PoolSlots::new(1);
    let policy = RestartPolicy {
        max_restarts: 1,
        window: Duration::from_secs(1),
        backoff: MS,
    };
    let factory = FakePipeline {
        seen: Arc::clone(&seen),
        took,
    };
    let args = PoolArgs {
        name: "pipeline",
        factory,
        slots: Arc::clone(&workers),
        policy,
        metrics: Arc::clone(&metrics),
        health: recd_runtime::pool::root::Health::new(),
    };
    Actor::spawn(None, PoolSupervisor::<FakePipeline>::default(), args)
        .await
        .unwrap();
    let saturation = Arc::new(LaneSaturation::new(config.lanes.len()));
    let args = GatewayArgs {
        config,
        workers,
        metrics: Arc::clone(&metrics),
        saturation: Arc::clone(&saturation),
    };
    let (gateway, _) = Actor::spawn(None, Gateway, args).await.unwrap();
    Harness {
        gateway,
        seen,
        metrics,
        saturation,
    }
}

type Reply = oneshot::Receiver<Result<Answer, RecdError>>;

fn submit(h: &Harness, user: &str, lane: usize, budget: Duration) -> Reply {
    let (tx, rx) = oneshot::channel();
    let received = now();
    let req = PendingRequest {
        request_id: user.into(),
        trace: 7,
        user_id: Arc::from(user),
        topk: 10,
        lane,
        variant: "A".into(),
        shadow: false,
        received,
        deadline: received + budget,
        reply: tx,
    };
    h.gateway.cast(GatewayMessage::Submit(req)).unwrap();
    rx
}

fn config(batching: BatchingMode) -> GatewayConfig {
    GatewayConfig {
        batching,
        eager_when_idle: false,
        max_wait_us: 50_000,
        deadline_margin_us: 1_000,
        ..GatewayConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_batching_closes_in_time_for_the_earliest_deadline() {
    let h = start(config(BatchingMode::Deadline), MS).await;
    let t0 = now();
    let rx = submit(&h, "u1", 1, MS * 10);
    assert!(rx.await.unwrap().is_ok(), "answered within its budget");
    let (at, ids) = h.seen.lock().unwrap()[0].clone();
    assert_eq!(ids, vec!["u1"]);
    // prior batch time 2 ms + margin 1 ms before a 10 ms deadline: closed at 7 ms, not 50
    assert_eq!(at - t0, MS * 7);
}

#[tokio::test(start_paused = true)]
async fn fixed_batching_waits_out_its_delay_and_misses_the_deadline() {
    let h = start(config(BatchingMode::Fixed), MS).await;
    let rx = submit(&h, "u1", 1, MS * 10);
    let err = rx.await.unwrap().unwrap_err();
    assert_eq!(err.code, recd_runtime::ErrorCode::DeadlineExceeded);
    assert!(
        h.seen.lock().unwrap().is_empty(),
        "nothing reached the pipeline"
    );
    assert_eq!(
        h.metrics
            .shed
            .with_label_values(&["default", "deadline"])
            .get(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn early_refusal_refuses_the_request_not_its_batch() {
    let mut c = config(BatchingMode::Deadline);
    c.max_batch = 3;
    let h = start(c, MS * 20).await;
    // teach the model that a batch takes 20 ms
    let warm: Vec<_> = (0..3)
        .map(|i| submit(&h, &format!("w{i}"), 1, MS * 1000))
        .collect();
    for rx in warm {
        assert!(rx.await.unwrap().is_ok());
    }
    // the same lane: its batches are the ones that take 20 ms
    let urgent = submit(&h, "urgent", 1, MS * 5);
    let a = submit(&h, "a", 1, MS * 100);
    let b = submit(&h, "b", 1, MS * 100);
    let err = urgent.await.unwrap().unwrap_err();
    assert_eq!(
        err.code,
        recd_runtime::ErrorCode::DeadlineExceeded,
        "{}",
        err.message
    );
    assert!(
        err.message.contains("cannot meet the deadline"),
        "{}",
        err.message
    );
    assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
    let seen = h.seen.lock().unwrap();
    assert_eq!(
        seen.last().unwrap().1,
        vec!["a", "b"],
        "the rest of the batch went ahead"
    );
    assert_eq!(
        h.metrics
            .shed
            .with_label_values(&["default", "cannot_meet_deadline"])
            .get(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_comes_from_one_lane_and_lanes_keep_their_own_batch_time() {
    let mut c = config(BatchingMode::Deadline);
    c.max_batch = 4;
    let h = start(c, MS * 20).await;
    // teach the default lane that its batches take 20 ms
    let warm: Vec<_> = (0..4)
        .map(|i| submit(&h, &format!("w{i}"), 1, MS * 1000))
        .collect();
    for rx in warm {
        assert!(rx.await.unwrap().is_ok());
    }
    // a default request with 3 ms left cannot make it (a default batch of one: ~5 ms); a
    // critical one with 5 ms can (its lane's prior, 2 ms)
    let slow = submit(&h, "d", 1, MS * 3);
    let fast = submit(&h, "c", 0, MS * 5);
    let bg = submit(&h, "b", 2, MS * 1000);
    assert!(
        fast.await.unwrap().is_ok(),
        "dispatched, not refused: the critical lane has its own batch time"
    );
    assert!(slow.await.unwrap().is_err());
    assert!(bg.await.unwrap().is_ok());
    let seen = h.seen.lock().unwrap();
    let batches: Vec<Vec<String>> = seen.iter().skip(1).map(|(_, ids)| ids.clone()).collect();
    assert_eq!(
        batches,
        vec![vec!["c".to_owned()], vec!["b".to_owned()]],
        "one lane per batch"
    );
}

#[tokio::test(start_paused = true)]
async fn cancelled_requests_free_their_slot_and_never_reach_the_pipeline() {
    let mut c = config(BatchingMode::Deadline);
    c.max_batch = 4;
    let h = start(c, MS).await;
    let mut live = Vec::new();
    for i in 0..8 {
        let rx = submit(&h, &format!("u{i}"), 1, MS * 500);
        if i % 2 == 0 {
            drop(rx); // the client went away
        } else {
            live.push(rx);
        }
    }
    for rx in live {
        assert!(rx.await.unwrap().is_ok());
    }
    let seen: Vec<String> = h
        .seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, ids)| ids.clone())
        .collect();
    assert_eq!(
        seen,
        vec!["u1", "u3", "u5", "u7"],
        "one batch of the four live requests"
    );
    assert_eq!(
        h.metrics
            .shed
            .with_label_values(&["default", "cancelled"])
            .get(),
        4
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_lane_is_published_as_saturated_until_it_drains() {
    let mut c = config(BatchingMode::Fixed);
    c.lanes[1].capacity = 2;
    let h = start(c, MS).await;
    let a = submit(&h, "a", 1, MS * 500);
    let b = submit(&h, "b", 1, MS * 500);
    let refused = submit(&h, "c", 1, MS * 500);
    let err = refused.await.unwrap().unwrap_err();
    assert!(err.message.contains("queue is full"), "{}", err.message);
    assert!(h.saturation.is_saturated(1), "the full lane is published");
    assert!(!h.saturation.is_saturated(0), "other lanes are not");
    // the batch timer (50 ms) dispatches both; the lane drains and is released
    assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
    assert!(!h.saturation.is_saturated(1));
}
