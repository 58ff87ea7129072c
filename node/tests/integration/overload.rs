//! Twice the measured capacity, open loop, through a real `recd-node` process and the
//! real load generator: the critical lane keeps being served while the lower lanes are
//! shed. Counts, not times: the capacity is measured first, on this machine, in this run.

use crate::cluster::{free_port, spawn_with, ONE_CLUSTER_AT_A_TIME};
use crate::common::{client, poll};
use clap::Parser;
use recd_loadgen::cli::Args;
use recd_loadgen::client::Client;
use recd_loadgen::stats::Summary;

async fn load(url: &str, extra: &[&str]) -> Summary {
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
    let client = Client::new(&args.url, args.timeout).unwrap();
    let run = match args.mode {
        recd_loadgen::cli::Mode::Closed => recd_loadgen::closed_loop::run(&args, &client).await,
        _ => {
            recd_loadgen::open_loop::run(&args, &client, args.rate, args.duration, args.seed).await
        }
    };
    run.summary(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_requests_are_served_at_twice_the_capacity() {
    // the whole machine: no cluster test beside it
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let env = [
        ("RECD__CLUSTER__NODES", "[]"),
        ("RECD__CLUSTER__LISTEN", "null"),
        ("RECD__COMPUTE__THREADS", "2"),
        ("RECD__GATEWAY__PIPELINE_WORKERS", "4"),
    ];
    let node = spawn_with("recd-0", "unused", free_port(), &[], &env);
    let c = client();
    let ready = format!("http://{}/readyz", node.http);
    poll(120, || async {
        let r = c.get(&ready).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let url = format!("http://{}", node.http);
    let lanes = ["--lanes", "critical=5,default=25,background=70"];
    let budgets = ["--deadlines", "critical=100,default=200,background=500"];
    let closed = load(
        &url,
        &[
            "--mode",
            "closed",
            "--connections",
            "32",
            "--duration",
            "3s",
        ],
    )
    .await;
    let capacity = closed.achieved_rps;
    assert!(capacity > 50.0, "the node serves: {capacity}/s");
    let rate = format!("{:.0}", 2.0 * capacity);
    let mut open = vec!["--mode", "open", "--rate", &rate, "--duration", "4s"];
    open.extend(["--connections", "8192", "--timeout", "5s"]);
    open.extend(lanes);
    open.extend(budgets);
    let s = load(&url, &open).await;
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
    let critical = lane("critical");
    assert!(
        critical.requests >= 100,
        "enough critical requests to count: {}",
        critical.requests
    );
    assert!(
        critical.failed * 100 < critical.requests,
        "critical refused {} of {} at 2x capacity",
        critical.failed,
        critical.requests
    );
    assert!(
        lane("background").failed > 0,
        "the lowest lane is shed at 2x"
    );
}
