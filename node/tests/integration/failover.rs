//! Failover of a 3-node cluster (configs/local-cluster.yaml, R = 2) under load, all on
//! real processes: kill -9 of a node, its restart and rejoin, SIGSTOP of another (a hung
//! peer ractor_cluster never notices by itself) and SIGCONT. Requests keep going to
//! recd-0 throughout; the counts and times are printed for the issue notes.

use crate::cluster::{cluster_view, free_port, names, peer_up, spawn, three_nodes};
use crate::common::{client, metric_sum, metrics_text, poll};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers seen while the load runs: when, status, coverage.
type Log = Arc<Mutex<Vec<(Instant, u16, f64)>>>;

/// Closed-loop load on `http` from `workers` tasks until `stop` is set.
fn load(http: std::net::SocketAddr, workers: usize, stop: Arc<AtomicBool>, log: Log) {
    for w in 0..workers {
        let (stop, log) = (Arc::clone(&stop), Arc::clone(&log));
        tokio::spawn(async move {
            let client = client();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let body = format!(
                    r#"{{"user_id":"u{}","topk":10}}"#,
                    (i * 7919 + w as u64) % 50_000
                );
                let r = client
                    .post(format!("http://{http}/recommend"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let (status, coverage) = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let json: serde_json::Value = r.json().await.unwrap_or_default();
                        (status, json["coverage"].as_f64().unwrap_or(0.0))
                    }
                    Err(_) => (0, 0.0),
                };
                log.lock().unwrap().push((Instant::now(), status, coverage));
            }
        });
    }
}

/// Requests after `from`: total, failed (not 200), and the time from `from` to the last
/// failed or partial answer (zero when there was none).
fn tally(log: &Log, from: Instant, to: Instant) -> (usize, usize, Duration) {
    let log = log.lock().unwrap();
    let window: Vec<_> = log
        .iter()
        .filter(|(t, _, _)| *t >= from && *t < to)
        .collect();
    let failed = window.iter().filter(|(_, s, _)| *s != 200).count();
    let last_bad = window
        .iter()
        .filter(|(_, s, c)| *s != 200 || *c < 1.0)
        .map(|(t, _, _)| t.duration_since(from))
        .max()
        .unwrap_or_default();
    (window.len(), failed, last_bad)
}

/// Calls `node` served for its peers (pings not counted).
async fn served_ok(client: &reqwest::Client, node: &crate::cluster::NodeProc) -> u64 {
    let text = metrics_text(client, node.http).await;
    ["index", "features", "ranker"]
        .iter()
        .map(|k| {
            let kind = format!("kind=\"{k}\"");
            metric_sum(
                &text,
                "recd_remote_served_total",
                &[&kind, "outcome=\"ok\""],
            )
        })
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_restart_and_hang_of_nodes_under_load() {
    let _one = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let client = client();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = three_nodes(&ports).await;
    let stop = Arc::new(AtomicBool::new(false));
    let log: Log = Arc::default();
    load(nodes[0].http, 4, Arc::clone(&stop), Arc::clone(&log));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // kill -9 of recd-2
    let killed = Instant::now();
    let _ = nodes[2].child.kill();
    let _ = nodes[2].child.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (total, failed, moved) = tally(&log, killed, Instant::now());
    println!("kill -9: {total} requests, {failed} failed, last partial/failed answer {moved:?} after the kill");
    assert!(total > 100, "the load ran ({total} requests)");
    assert!(failed * 1000 <= total, "{failed} of {total} failed");
    assert!(
        moved <= Duration::from_secs(2),
        "traffic moved after {moved:?}"
    );

    // restart: it rejoins, loads its shards from the snapshot and takes traffic again
    let restarted = Instant::now();
    nodes[2] = spawn("recd-2", "s3cret", ports[2], &[ports[0], ports[1]]);
    let placement = cluster_view(&client, &nodes[0]).await.unwrap()["placement"].clone();
    poll(120, || async {
        let v = cluster_view(&client, &nodes[0]).await?;
        let back =
            (0..4).all(|s| names(&v["live"]["index"][s]) == sorted(names(&placement["index"][s])));
        back.then_some(())
    })
    .await;
    let rejoined = restarted.elapsed();
    let before = served_ok(&client, &nodes[2]).await;
    poll(30, || async {
        (served_ok(&client, &nodes[2]).await > before).then_some(())
    })
    .await;
    println!("restart: recd-2 serving its shards again {rejoined:?} after it was started");

    // SIGSTOP of recd-1: detected by the heartbeat and routed around, back after SIGCONT
    let hung = Instant::now();
    nodes[1].signal("STOP");
    // until it is detected, calls to the hung peer pile up (the router prefers the
    // replica with fewer in flight; the cap itself is unit-tested in recd_runtime::peers)
    let most = std::sync::atomic::AtomicU64::new(0);
    let (most_ref, client_ref, node0) = (&most, &client, &nodes[0]);
    poll(30, || async move {
        let view = cluster_view(client_ref, node0).await?;
        let peers = view["peers"].as_array()?;
        let peer = peers.iter().find(|p| p["name"] == "recd-1")?;
        most_ref.fetch_max(peer["in_flight"].as_u64()?, Ordering::Relaxed);
        (peer["up"] == false).then_some(())
    })
    .await;
    let detected = hung.elapsed();
    let most_in_flight = most.load(Ordering::Relaxed);
    println!("SIGSTOP: at most {most_in_flight} calls in flight to the hung peer");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (total, failed, _) = tally(&log, hung, Instant::now());
    println!("SIGSTOP: detected after {detected:?}; {total} requests meanwhile, {failed} failed");
    assert!(
        detected <= Duration::from_millis(2500),
        "hung peer detected after {detected:?}"
    );
    assert!(
        failed * 1000 <= total,
        "{failed} of {total} failed while a peer hung"
    );
    nodes[1].signal("CONT");
    poll(30, || async {
        (peer_up(&client, &nodes[0], "recd-1").await == Some(true)).then_some(())
    })
    .await;
    let t = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (total, failed, _) = tally(&log, t, Instant::now());
    assert!(
        total > 0 && failed == 0,
        "after SIGCONT: {failed} of {total} failed"
    );
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}
