//! The router's choices against a fake seam, on paused time: every delay below is exact.

use super::*;
use crate::data::Schema;
const DIM: usize = Schema::WORKLOAD.dim;
use recd_runtime::ErrorCode;

const MS: Duration = Duration::from_millis(1);

/// What a fake replica does with a call.
#[derive(Clone, Copy)]
enum Does {
    /// Answers one candidate per query (its own tag as the id) after the delay.
    Answer(Duration),
    /// Fails with this code after the delay.
    Fail(Duration, ErrorCode),
    /// Answers no candidates at all (an answer out of shape) after the delay.
    Misshapen(Duration),
    /// Answers after the first delay for its first `n` calls, after the second later.
    SlowAfter(usize, Duration, Duration),
}

/// Every call a fake saw: which replica, when (since the test began), with what timeout.
type Log = Arc<Mutex<Vec<(u64, Duration, Duration)>>>;

struct Fake {
    tag: u64,
    does: Does,
    log: Log,
    began: Instant,
}

impl Fake {
    /// Calls this replica (by tag) answered before this one.
    fn earlier_calls(&self) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|(tag, _, _)| *tag == self.tag).count() - 1
    }
}

impl Stage for Fake {
    fn call<'a>(
        &'a self,
        call: &'a Call,
        _: Priority,
        timeout: Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<Answer, RecdError>> {
        Box::pin(async move {
            let at = self.began.elapsed();
            self.log.lock().unwrap().push((self.tag, at, timeout));
            let n = match call {
                Call::Search { queries, dim, .. } => queries.len() / dim,
                // a write is answered as applied by any replica that answers
                Call::Items { changes, .. } => changes.len(),
                _ => unreachable!("the tests search and write items"),
            };
            let answer = |one: Candidate| match call {
                Call::Items { .. } => Answer::Applied(n),
                _ => Answer::Candidates(vec![vec![one]; n]),
            };
            let (delay, result) = match self.does {
                Does::Answer(d) => {
                    let one = Candidate {
                        id: self.tag,
                        distance: 0.0,
                    };
                    (d, Ok(answer(one)))
                }
                Does::Fail(d, code) => (d, Err(RecdError::new(code, "fake failure"))),
                Does::Misshapen(d) => (d, Ok(Answer::Candidates(Vec::new()))),
                Does::SlowAfter(n, fast, slow) => {
                    let d = if self.earlier_calls() < n { fast } else { slow };
                    let one = Candidate {
                        id: self.tag,
                        distance: 0.0,
                    };
                    (d, Ok(answer(one)))
                }
            };
            if tokio::time::timeout(timeout, tokio::time::sleep(delay))
                .await
                .is_err()
            {
                return Err(RecdError::deadline("fake timed out"));
            }
            result
        })
    }
}

/// Replicas given as `(tag, local, in_flight, ewma_us, does)`, in that (unsorted) order.
struct Fakes {
    replicas: Vec<(u64, bool, usize, u64, Does)>,
    log: Log,
    began: Instant,
}

impl Replicas for Fakes {
    fn replicas(&self, _: Target) -> Vec<Replica> {
        (self.replicas.iter())
            .map(|&(tag, local, in_flight, ewma_us, does)| Replica {
                stage: Arc::new(Fake {
                    tag,
                    does,
                    log: Arc::clone(&self.log),
                    began: self.began,
                }),
                local,
                in_flight,
                ewma_us,
            })
            .collect()
    }
}

fn router(
    replicas: Vec<(u64, bool, usize, u64, Does)>,
    hedge: Option<Duration>,
) -> (Router, Log, Arc<Metrics>) {
    let log = Log::default();
    let fakes = Fakes {
        replicas,
        log: Arc::clone(&log),
        began: Instant::now(),
    };
    let metrics = Arc::new(Metrics::new());
    let shards = ShardCounts {
        features: 1,
        index: 1,
    };
    (
        Router::new(Arc::new(fakes), shards, hedge, Arc::clone(&metrics)),
        log,
        metrics,
    )
}

fn search() -> Call {
    Call::Search {
        shard: 0,
        queries: Arc::new(vec![0.1; DIM * 2]),
        dim: DIM,
        k: 10,
        ef: 10,
    }
}

fn priority() -> Priority {
    Priority {
        deadline: recd_runtime::clock::now() + Duration::from_secs(1),
        lane: 0,
        trace: 0,
    }
}

/// The tag of the replica whose answer came back.
fn answered_by(r: Result<Answer, RecdError>) -> u64 {
    match r {
        Ok(Answer::Candidates(c)) => {
            assert_eq!(c.len(), 2, "one list per query");
            c[0][0].id
        }
        other => panic!("expected candidates, got {other:?}"),
    }
}

fn tried(log: &Log) -> Vec<(u64, Duration)> {
    log.lock()
        .unwrap()
        .iter()
        .map(|&(tag, at, _)| (tag, at))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn local_first_then_least_in_flight_then_lowest_latency() {
    let fail = Does::Fail(MS, ErrorCode::Unavailable);
    let (r, log, _) = router(
        vec![
            (1, false, 2, 10, fail),
            (2, false, 0, 500, fail),
            (3, false, 0, 100, fail),
            (4, true, 0, 0, fail),
        ],
        Some(Duration::from_secs(1)),
    );
    let e = r.call(search(), priority(), 100 * MS).await.unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::Unavailable,
        "the last failure is reported"
    );
    let order: Vec<u64> = tried(&log).into_iter().map(|(tag, _)| tag).collect();
    assert_eq!(order, vec![4, 3, 2, 1]);
}

#[tokio::test(start_paused = true)]
async fn a_failure_moves_to_the_next_replica_at_once() {
    let (r, log, metrics) = router(
        vec![
            (1, true, 0, 0, Does::Fail(3 * MS, ErrorCode::Overloaded)),
            (2, false, 0, 0, Does::Answer(2 * MS)),
        ],
        Some(50 * MS),
    );
    assert_eq!(answered_by(r.call(search(), priority(), 100 * MS).await), 2);
    assert_eq!(tried(&log), vec![(1, Duration::ZERO), (2, 3 * MS)]);
    let hedges = metrics.remote_hedges.with_label_values(&["index"]).get();
    assert_eq!(hedges, 0, "a failover is not a hedge");
}

#[tokio::test(start_paused = true)]
async fn a_slow_replica_is_hedged_after_the_delay_and_the_first_answer_wins() {
    let (r, log, metrics) = router(
        vec![
            (1, true, 0, 0, Does::Answer(100 * MS)),
            (2, false, 0, 0, Does::Answer(5 * MS)),
            (3, false, 1, 0, Does::Answer(MS)),
        ],
        Some(10 * MS),
    );
    let started = Instant::now();
    assert_eq!(answered_by(r.call(search(), priority(), 200 * MS).await), 2);
    assert_eq!(
        started.elapsed(),
        15 * MS,
        "hedged at 10 ms, answered 5 ms later"
    );
    assert_eq!(
        tried(&log),
        vec![(1, Duration::ZERO), (2, 10 * MS)],
        "the third is never asked"
    );
    assert_eq!(metrics.remote_hedges.with_label_values(&["index"]).get(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_a_fixed_delay_the_hedge_follows_observed_latency() {
    let (r, log, _) = router(vec![(1, true, 0, 0, Does::Answer(2 * MS))], None);
    for _ in 0..3 {
        answered_by(r.call(search(), priority(), 100 * MS).await);
    }
    // every call took 2 ms: p95 = mean + 2 × deviation = 2 ms
    let (r2, log2, _) = router(
        vec![
            (1, true, 0, 0, Does::Answer(50 * MS)),
            (2, false, 0, 0, Does::Answer(MS)),
        ],
        None,
    );
    let started = Instant::now();
    assert_eq!(
        answered_by(r2.call(search(), priority(), 100 * MS).await),
        2
    );
    assert_eq!(
        tried(&log2)[1].1,
        super::INITIAL_HEDGE,
        "before any observation"
    );
    assert_eq!(started.elapsed(), super::INITIAL_HEDGE + MS);
    assert_eq!(log.lock().unwrap().len(), 3);

    // a router that observed 2 ms answers hedges at that p95, not at the initial 5 ms
    let (r3, log3, _) = router(
        vec![
            (1, true, 0, 0, Does::SlowAfter(3, 2 * MS, 50 * MS)),
            (2, false, 0, 0, Does::Answer(MS)),
        ],
        None,
    );
    for _ in 0..3 {
        assert_eq!(
            answered_by(r3.call(search(), priority(), 100 * MS).await),
            1
        );
    }
    let started = Instant::now();
    assert_eq!(
        answered_by(r3.call(search(), priority(), 100 * MS).await),
        2
    );
    assert_eq!(
        started.elapsed(),
        3 * MS,
        "hedged at the observed 2 ms, answered 1 ms later"
    );
    let calls = tried(&log3);
    assert_eq!(
        calls[4].1 - calls[3].1,
        2 * MS,
        "the hedge left 2 ms after the first attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn a_bad_request_fails_once_not_on_every_replica() {
    let (r, log, _) = router(
        vec![
            (1, true, 0, 0, Does::Fail(MS, ErrorCode::BadRequest)),
            (2, false, 0, 0, Does::Answer(MS)),
        ],
        Some(50 * MS),
    );
    let e = r.call(search(), priority(), 100 * MS).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert_eq!(tried(&log), vec![(1, Duration::ZERO)]);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_shares_the_call_deadline() {
    let (r, log, _) = router(
        vec![
            (1, true, 0, 0, Does::Fail(15 * MS, ErrorCode::Unavailable)),
            (2, false, 0, 0, Does::Answer(100 * MS)),
        ],
        Some(Duration::from_secs(1)),
    );
    let started = Instant::now();
    let e = r.call(search(), priority(), 20 * MS).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::DeadlineExceeded);
    assert_eq!(
        started.elapsed(),
        20 * MS,
        "no attempt extends the call's budget"
    );
    let timeouts: Vec<Duration> = log.lock().unwrap().iter().map(|&(_, _, t)| t).collect();
    assert_eq!(
        timeouts,
        vec![20 * MS, 5 * MS],
        "the failover gets what is left"
    );
}

#[tokio::test(start_paused = true)]
async fn an_answer_out_of_shape_is_a_failed_attempt() {
    let (r, log, _) = router(
        vec![
            (1, true, 0, 0, Does::Misshapen(MS)),
            (2, false, 0, 0, Does::Answer(MS)),
        ],
        Some(50 * MS),
    );
    assert_eq!(answered_by(r.call(search(), priority(), 100 * MS).await), 2);
    assert_eq!(tried(&log).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn no_replica_is_unavailable_at_once() {
    let (r, _, _) = router(Vec::new(), None);
    let started = Instant::now();
    let e = r.call(search(), priority(), 100 * MS).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert_eq!(started.elapsed(), Duration::ZERO);
}

fn item_write() -> Call {
    Call::Items {
        shard: 0,
        changes: Arc::new(vec![(7, None)]),
    }
}

#[tokio::test(start_paused = true)]
async fn a_write_is_never_hedged_and_moves_on_only_after_a_refusal() {
    // a slow replica is not hedged for a write (it is for a read)
    let slow = || {
        vec![
            (1, true, 0, 0, Does::Answer(30 * MS)),
            (2, false, 0, 0, Does::Answer(MS)),
        ]
    };
    let (r, log, _) = router(slow(), Some(5 * MS));
    assert!(matches!(
        r.call(item_write(), priority(), Duration::from_secs(1))
            .await,
        Ok(Answer::Applied(1))
    ));
    assert_eq!(
        tried(&log).iter().map(|t| t.0).collect::<Vec<_>>(),
        [1],
        "no hedge"
    );
    let (r, log, _) = router(slow(), Some(5 * MS));
    assert_eq!(
        answered_by(r.call(search(), priority(), Duration::from_secs(1)).await),
        2
    );
    assert_eq!(tried(&log).len(), 2, "a read is hedged");
    // a write that timed out may have committed: not sent again
    let late = vec![
        (1, true, 0, 0, Does::Fail(MS, ErrorCode::DeadlineExceeded)),
        (2, false, 0, 0, Does::Answer(MS)),
    ];
    let (r, log, _) = router(late, None);
    let e = r
        .call(item_write(), priority(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, tried(&log).len()),
        (ErrorCode::DeadlineExceeded, 1)
    );
    // refused before it ran (a full queue): the next replica takes it
    let full = vec![
        (1, true, 0, 0, Does::Fail(MS, ErrorCode::Overloaded)),
        (2, false, 0, 0, Does::Answer(MS)),
    ];
    let (r, log, _) = router(full, None);
    assert!(r
        .call(item_write(), priority(), Duration::from_secs(1))
        .await
        .is_ok());
    assert_eq!(tried(&log).iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
}
