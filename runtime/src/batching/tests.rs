use super::*;

const MS: Duration = Duration::from_millis(1);

fn view(now: Instant, queued: usize, waited_ms: u64, deadline_in_ms: u64) -> QueueView {
    QueueView {
        queued,
        oldest: now - MS * waited_ms as u32,
        earliest_deadline: now + MS * deadline_in_ms as u32,
    }
}

#[test]
fn model_learns_per_bucket_and_interpolates() {
    let mut m = ServiceModel::new(MS * 5);
    assert_eq!(m.predict(8), MS * 5, "prior before any observation");
    m.observe(8, MS * 4);
    assert_eq!(m.predict(8), MS * 4);
    assert_eq!(m.predict(12), MS * 4, "same bucket (8..15)");
    assert_eq!(m.predict(16), MS * 8, "nearest bucket scaled by size");
    for _ in 0..50 {
        m.observe(8, MS * 2);
    }
    let p = m.predict(8);
    assert!(
        p > MS * 2 - Duration::from_micros(50) && p < MS * 2 + Duration::from_micros(50),
        "{p:?}"
    );
}

#[test]
fn fixed_policy_waits_for_age_or_size() {
    let m = ServiceModel::new(MS * 3);
    let now = Instant::now();
    let p = BatchPolicy::Fixed { max_wait: MS * 2 };
    assert_eq!(
        p.decide(now, view(now, 3, 0, 100), 32, &m),
        Decision::WaitUntil(now + MS * 2)
    );
    assert_eq!(
        p.decide(now, view(now, 3, 2, 100), 32, &m),
        Decision::Dispatch
    );
    assert_eq!(
        p.decide(now, view(now, 32, 0, 100), 32, &m),
        Decision::Dispatch
    );
    // the fixed policy ignores deadlines: it keeps waiting even when that is too late
    assert_eq!(
        p.decide(now, view(now, 3, 0, 1), 32, &m),
        Decision::WaitUntil(now + MS * 2)
    );
}

#[test]
fn deadline_policy_closes_when_slack_runs_out() {
    let mut m = ServiceModel::new(MS * 3);
    m.observe(4, MS * 3);
    let now = Instant::now();
    let p = BatchPolicy::Deadline {
        margin: MS,
        max_wait: MS * 20,
    };
    // deadline in 10 ms, batch takes ~3 ms, margin 1 ms: may wait until now + 6 ms
    assert_eq!(
        p.decide(now, view(now, 3, 0, 10), 32, &m),
        Decision::WaitUntil(now + MS * 6)
    );
    // deadline in 4 ms: 4 - 3 - 1 = 0, close now
    assert_eq!(
        p.decide(now, view(now, 3, 0, 4), 32, &m),
        Decision::Dispatch
    );
    // far deadline: the age cap still bounds the wait
    assert_eq!(
        p.decide(now, view(now, 3, 5, 1000), 32, &m),
        Decision::WaitUntil(now + MS * 15)
    );
}

#[test]
fn early_refusal_judges_each_request() {
    let mut m = ServiceModel::new(MS * 3);
    m.observe(16, MS * 6);
    let now = Instant::now();
    assert!(can_meet(now, now + MS * 7, 16, &m, Admit::OnTail));
    assert!(!can_meet(now, now + MS * 5, 16, &m, Admit::OnTail));
}

#[test]
fn the_tail_covers_batches_slower_than_average() {
    let mut m = ServiceModel::new(MS * 5);
    for _ in 0..100 {
        m.observe(8, MS * 4);
    }
    assert_eq!(m.predict_tail(8), m.predict(8), "no spread, no tail");
    for i in 0..200 {
        m.observe(8, if i % 2 == 0 { MS * 2 } else { MS * 6 });
    }
    // mean ~4 ms, mean absolute deviation ~2 ms: the tail is ~8 ms
    let tail = m.predict_tail(8);
    assert!(tail > MS * 7 && tail < MS * 9, "{tail:?}");
    let now = Instant::now();
    assert!(can_meet(now, now + MS * 9, 8, &m, Admit::OnTail));
    assert!(
        !can_meet(now, now + MS * 6, 8, &m, Admit::OnTail),
        "the mean would fit, the tail does not"
    );
    assert!(can_meet(now, now + MS * 6, 8, &m, Admit::OnMean));
}
