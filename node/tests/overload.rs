//! Twice the measured capacity, open loop, through a real `recd-node` process and the
//! real load generator: the critical lane keeps being served while the lower lanes are
//! shed. Counts, not times: the capacity is measured first, on this machine, in this run.
//!
//! A test binary of its own (not in `tests/integration`): cargo runs test binaries one
//! after another, so nothing else in the suite competes for the cores while it measures
//! a capacity and then offers twice it.

use clap::Parser;
use recd_loadgen::cli::Args;
use recd_loadgen::client::Client;
use recd_loadgen::stats::Summary;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One run of the generator with `extra` flags, over `client` (kept across runs, so the
/// measured run starts on warm connections).
async fn load(url: &str, client: &Client, extra: &[&str]) -> Summary {
    let out = tempfile::tempdir().unwrap();
    let mut argv = vec![
        "recd-loadgen",
        "--url",
        url,
        "--out",
        out.path().to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    let args = Args::parse_from(argv);
    let run = match args.mode {
        recd_loadgen::cli::Mode::Closed => recd_loadgen::closed_loop::run(&args, client).await,
        _ => recd_loadgen::open_loop::run(&args, client, args.rate, args.duration, args.seed).await,
    };
    run.summary(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_requests_are_served_at_twice_the_capacity() {
    let data = tempfile::tempdir().unwrap();
    recd_actors::datagen::generate(data.path(), 5_000, 11, |_| {}).unwrap();
    let node = Node::start(data.path());
    node.ready().await;
    let url = format!("http://{}", node.http);
    let lanes = ["--lanes", "critical=5,default=25,background=70"];
    let budgets = ["--deadlines", "critical=100,default=200,background=500"];
    let client = Client::new(&url, Duration::from_secs(5)).unwrap();
    // capacity: 32 clients, closed loop, after a warm-up of the node's time models
    let closed = ["--mode", "closed", "--connections", "32"];
    load(
        &url,
        &client,
        &[&closed[..], &["--duration", "2s"]].concat(),
    )
    .await;
    let capacity = load(
        &url,
        &client,
        &[&closed[..], &["--duration", "4s"]].concat(),
    )
    .await
    .achieved_rps;
    assert!(capacity > 50.0, "the node serves: {capacity}/s");
    // twice that, open loop: 2 s to open the connections and reach the steady state
    // the test is about, then 4 s counted
    let rate = format!("{:.0}", 2.0 * capacity);
    let mut open = vec!["--mode", "open", "--rate", &rate, "--connections", "8192"];
    open.extend(["--timeout", "5s"]);
    open.extend(lanes);
    open.extend(budgets);
    load(
        &url,
        &client,
        &[&open[..], &["--duration", "2s", "--seed", "1"]].concat(),
    )
    .await;
    let s = load(
        &url,
        &client,
        &[&open[..], &["--duration", "4s", "--seed", "2"]].concat(),
    )
    .await;
    let lane = |name: &str| &s.lanes[name];
    for name in ["critical", "default", "background"] {
        let l = lane(name);
        eprintln!(
            "{name}: {} requests, {} failed ({} shed), p99 {:.1} ms, goodput {:.0}/s",
            l.requests, l.failed, l.shed, l.p99_ms, l.goodput_rps
        );
    }
    eprintln!(
        "capacity {capacity:.0}/s, offered {rate}/s: goodput {:.0}/s, answered in budget {:.0}/s, rungs {:?}, errors {:?}",
        s.goodput_rps, s.answered_in_budget_rps, s.rungs, s.errors
    );
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("recd_shed_total") && l.contains("critical"))
    {
        eprintln!("{line}");
    }
    let critical = lane("critical");
    assert!(
        critical.requests >= 100,
        "enough critical requests to count: {}",
        critical.requests
    );
    // what is left of the critical lane's failures at 2x are deadline misses of its
    // 100 ms budget while the generator shares the 2 cores (1-7 % across runs on a noisy
    // 2-vCPU machine, 2026-12-01); refusing the lane — the failure this test guards
    // against — fails most of it. Counted as fractions, and against the lowest lane's.
    let fraction =
        |l: &recd_loadgen::stats::LaneSummary| l.failed as f64 / l.requests.max(1) as f64;
    let background = lane("background");
    assert!(
        fraction(critical) < 0.15,
        "critical failed {} of {} at 2x capacity",
        critical.failed,
        critical.requests
    );
    assert!(background.failed > 0, "the lowest lane is shed at 2x");
    assert!(
        fraction(critical) * 5.0 < fraction(background),
        "critical ({}/{}) is served far ahead of background ({}/{})",
        critical.failed,
        critical.requests,
        background.failed,
        background.requests
    );
}

/// A `recd-node run` on configs/dev.yaml over `data`, killed when dropped.
struct Node {
    child: Child,
    http: SocketAddr,
}

impl Node {
    fn start(data: &Path) -> Self {
        let http = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap();
        let log = std::env::temp_dir().join("recd-overload-test.log");
        let child = Command::new(env!("CARGO_BIN_EXE_recd-node"))
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .args([
                "run",
                "--config",
                "configs/dev.yaml",
                "--http-listen",
                &http.to_string(),
            ])
            .arg("--data-dir")
            .arg(data)
            .env("RECD__DATA__GENERATE_IF_MISSING", "false")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).map_or_else(|_| Stdio::null(), Stdio::from))
            .spawn()
            .expect("starting recd-node");
        Self { child, http }
    }

    async fn ready(&self) {
        let url = format!("http://{}/readyz", self.http);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        for _ in 0..1200 {
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("recd-node not ready after 120 s");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
