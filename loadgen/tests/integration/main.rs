//! recd-loadgen against a local test server: offered rate, corrected latency under a
//! stall, cancellation, degraded answers counted per rung and kept out of goodput, users
//! reproducible by seed, and the files a sweep writes.

use axum::routing::post;
use axum::Router;
use clap::Parser;
use recd_loadgen::cli::{Args, Mode};
use recd_loadgen::client::Client;
use recd_loadgen::stats::Summary;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A stand-in for a node: answers at once, except that the first request after
/// `stall_after` is held for `stall_for`, and every request waits `delay`. With
/// `degrade`, answers cycle through four kinds: ANN order only, partial coverage, two
/// rungs at once, undegraded. Every user id asked is kept in `users`.
#[derive(Clone)]
struct Server {
    started: Instant,
    stall_after: Option<Duration>,
    stall_for: Duration,
    delay: Duration,
    stalled: Arc<AtomicBool>,
    degrade: bool,
    answered: Arc<AtomicU64>,
    users: Arc<Mutex<Vec<String>>>,
}

const DEGRADED: [&str; 4] = [
    r#""degraded":["ranker"],"coverage":1.0"#,
    r#""degraded":["candidates"],"coverage":0.5"#,
    r#""degraded":["features","rank_truncated"],"coverage":1.0"#,
    r#""degraded":[],"coverage":1.0"#,
];

async fn serve(server: Server) -> SocketAddr {
    let handler = move |body: String| {
        let s = server.clone();
        async move {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body) {
                s.users
                    .lock()
                    .unwrap()
                    .push(v["user_id"].as_str().unwrap_or("").to_owned());
            }
            if let Some(after) = s.stall_after {
                if s.started.elapsed() >= after && !s.stalled.swap(true, Ordering::SeqCst) {
                    tokio::time::sleep(s.stall_for).await;
                }
            }
            tokio::time::sleep(s.delay).await;
            let n = s.answered.fetch_add(1, Ordering::SeqCst) as usize;
            let quality = if s.degrade {
                DEGRADED[n % 4]
            } else {
                DEGRADED[3]
            };
            format!(r#"{{"user_id":"u1","items":[],"variant":"A",{quality},"request_id":"x"}}"#)
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, Router::new().route("/recommend", post(handler))).await
    });
    addr
}

fn plain() -> Server {
    Server {
        started: Instant::now(),
        stall_after: None,
        stall_for: Duration::ZERO,
        delay: Duration::ZERO,
        stalled: Arc::new(AtomicBool::new(false)),
        degrade: false,
        answered: Arc::new(AtomicU64::new(0)),
        users: Arc::default(),
    }
}

fn args(addr: SocketAddr, out: &std::path::Path, extra: &[&str]) -> Args {
    let url = format!("http://{addr}");
    let mut argv = vec![
        "recd-loadgen",
        "--url",
        &url,
        "--out",
        out.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    Args::parse_from(argv)
}

/// Serves `server`, runs the generator with `extra` flags in the mode they name (open by
/// default), and returns its summary.
async fn run(server: Server, extra: &[&str]) -> Summary {
    let addr = serve(server).await;
    let out = tempfile::tempdir().unwrap();
    let a = args(addr, out.path(), extra);
    let client = Client::new(&a.url, a.timeout).unwrap();
    let run = match a.mode {
        Mode::Closed => recd_loadgen::closed_loop::run(&a, &client).await,
        _ => recd_loadgen::open_loop::run(&a, &client, a.rate, a.duration, a.seed).await,
    };
    run.summary(&a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_the_offered_rate() {
    let started = Instant::now();
    let s = run(
        plain(),
        &["--rate", "300", "--duration", "2s", "--connections", "64"],
    )
    .await;
    assert_eq!(s.scheduled, 600, "2 s at 300/s");
    assert_eq!(s.finished, 600);
    assert!(
        (285.0..=315.0).contains(&s.achieved_rps),
        "achieved {}",
        s.achieved_rps
    );
    assert_eq!(s.error_rate, 0.0);
    assert!(s.kept_offered_rate, "max lag {} ms", s.max_send_lag_ms);
    let wall = started.elapsed().as_secs_f64();
    assert!(
        (1.9..3.5).contains(&wall),
        "the schedule spans the duration: {wall} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_corrected_latency_not_in_service_time() {
    let server = Server {
        stall_after: Some(Duration::from_millis(500)),
        stall_for: Duration::from_millis(400),
        ..plain()
    };
    // one connection: requests due during the stall wait for it (as behind a stuck server)
    let s = run(
        server,
        &["--rate", "100", "--duration", "2s", "--connections", "1"],
    )
    .await;
    assert_eq!(s.error_rate, 0.0);
    assert!(
        s.max_ms >= 350.0,
        "the stalled request itself: {} ms",
        s.max_ms
    );
    assert!(
        s.p90_ms >= 100.0,
        "corrected p90 {} ms shows the ~40 requests due during the stall",
        s.p90_ms
    );
    assert!(
        s.service_p99_ms < 50.0,
        "service p99 {} ms: once sent, requests were fast",
        s.service_p99_ms
    );
    assert!(!s.kept_offered_rate, "the generator reports it fell behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_requests_are_counted_as_cancelled() {
    let server = Server {
        delay: Duration::from_millis(300),
        ..plain()
    };
    let s = run(
        server,
        &[
            "--rate",
            "50",
            "--duration",
            "1s",
            "--cancel-fraction",
            "1",
            "--deadlines",
            "default=100",
        ],
    )
    .await;
    assert_eq!(
        s.errors.get("cancelled").copied(),
        Some(50),
        "{:?}",
        s.errors
    );
    assert_eq!(s.error_rate, 0.0, "cancellations are not failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_runs_its_clients() {
    let server = Server {
        delay: Duration::from_millis(5),
        ..plain()
    };
    let s = run(
        server,
        &["--mode", "closed", "--connections", "4", "--duration", "1s"],
    )
    .await;
    // 4 clients × ~1 s / ≥5 ms each: at most ~800 requests, well over 100
    assert!((100..=800).contains(&s.finished), "{}", s.finished);
    assert_eq!(s.offered_rps, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_writes_summary_csv_logs_and_plots() {
    let addr = serve(plain()).await;
    let out = tempfile::tempdir().unwrap();
    let a = args(
        addr,
        out.path(),
        &[
            "--mode",
            "sweep",
            "--sweep-start",
            "100",
            "--sweep-factor",
            "2",
            "--sweep-max",
            "400",
            "--duration",
            "1s",
            "--lanes",
            "critical=5,default=25,background=70",
        ],
    );
    recd_loadgen::run(a).await.unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"].as_array().unwrap().len(), 3);
    assert_eq!(summary["knee_offered_rps"], 400.0);
    for lane in ["critical", "default", "background"] {
        assert!(
            summary["knee"]["lanes"][lane]["p99_ms"].is_number(),
            "{lane}"
        );
    }
    let csv = std::fs::read_to_string(out.path().join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4, "{csv}");
    assert!(
        csv.starts_with("offered_rps,achieved_rps,goodput_rps,answered_in_budget_rps,degraded,"),
        "{csv}"
    );
    for f in ["latency-throughput", "latency-cdf", "lanes-p99", "goodput"] {
        for ext in ["png", "svg"] {
            let len = std::fs::metadata(out.path().join(format!("{f}.{ext}")))
                .unwrap()
                .len();
            assert!(len > 1000, "{f}.{ext} has {len} bytes");
        }
    }
    let log = std::fs::read(out.path().join("latency.hlog")).unwrap();
    let histograms = hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log)
        .filter(|e| {
            matches!(
                e,
                Ok(hdrhistogram::serialization::interval_log::LogEntry::Interval(_))
            )
        })
        .count();
    assert_eq!(
        histograms,
        3 * (2 + 3),
        "latency + service + 3 lanes per step"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_answers_are_counted_per_rung_and_are_not_goodput() {
    let server = Server {
        degrade: true,
        ..plain()
    };
    let s = run(server, &["--rate", "200", "--duration", "2s"]).await;
    assert_eq!(s.finished, 400);
    assert_eq!(s.errors.len(), 0, "every answer is a 200: {:?}", s.errors);
    // a cycle of four: ranker | candidates + partial | features + rank_truncated | clean
    assert_eq!(s.degraded, 300);
    for (rung, n) in [
        ("ranker", 100),
        ("candidates", 100),
        ("partial", 100),
        ("features", 100),
        ("rank_truncated", 100),
    ] {
        assert_eq!(s.rungs.get(rung).copied(), Some(n), "{rung}: {:?}", s.rungs);
    }
    assert_eq!(s.rungs.len(), 5, "{:?}", s.rungs);
    assert!(
        (s.goodput_rps - 50.0).abs() < 1e-9,
        "only clean answers: {}",
        s.goodput_rps
    );
    assert!(
        (s.answered_in_budget_rps - 200.0).abs() < 1e-9,
        "{}",
        s.answered_in_budget_rps
    );
    let lane = &s.lanes["default"];
    assert_eq!((lane.ok, lane.degraded), (400, 300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_reproducible_by_seed_and_differ_between_seeds() {
    let mut seen = Vec::new();
    for seed in ["7", "7", "8"] {
        let server = plain();
        let users = Arc::clone(&server.users);
        run(
            server,
            &["--rate", "100", "--duration", "1s", "--seed", seed],
        )
        .await;
        let mut u = users.lock().unwrap().clone();
        u.sort();
        seen.push(u);
    }
    assert_eq!(seen[0].len(), 100);
    assert_eq!(seen[0], seen[1], "the same seed draws the same users");
    let overlap = seen[2]
        .iter()
        .filter(|u| seen[0].binary_search(u).is_ok())
        .count();
    assert!(
        overlap < 5,
        "another seed draws other users: {overlap} shared"
    );
}
