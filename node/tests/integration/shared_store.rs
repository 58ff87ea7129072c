//! The redis backend against a real `redis-server` (Debian's; `.ci/run` installs it) on
//! loopback: writes served and durable across a kill -9 of Redis itself, default
//! profiles (flagged) while it is down, a server that does not fsync refused; and a
//! 3-node cluster (R = 2) whose replicas see each other's writes and a restarted node
//! that has every acknowledged event, and the item changes made while it was down.

use crate::cluster::{free_port, three_nodes_with, ONE_CLUSTER_AT_A_TIME};
use crate::common::{client, config, poll, recommend, small_data};
use crate::writes::{click, events, send, top, user};
use recd_node::Node;
use recd_runtime::config::StoreBackend;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` process on a loopback port, its AOF in `dir`.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(dir: &Path, port: u16, fsync: bool) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", if fsync { "yes" } else { "no" }])
            .args(["--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server) must be on PATH");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every candidate of `user`'s answer (topk 200), if it is whole (not degraded).
async fn all(c: &reqwest::Client, addr: std::net::SocketAddr, user: &str) -> Option<Vec<u64>> {
    let body = format!(r#"{{"user_id":"{user}","topk":200}}"#);
    let (status, json) = recommend(c, addr, &body, &[]).await;
    (status == 200 && json["degraded"] == json!([])).then(|| {
        (json["items"].as_array().unwrap().iter())
            .filter_map(|i| i["id"].as_u64())
            .collect()
    })
}

fn redis_config(url: &str) -> recd_runtime::config::Config {
    let mut c = config(small_data());
    c.features.store.backend = StoreBackend::Redis;
    c.features.store.redis.url = url.to_owned();
    c.features.store.redis.timeout_ms = 100;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_on_redis_survive_its_kill_and_reads_degrade_while_it_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = Redis::start(dir.path(), free_port(), true);
    let node = Node::start(redis_config(&redis.url())).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.expect("admin port");
    let before = top(&c, addr, "erin", 10).await;
    let batch = json!({"events": [click("r1", "erin", before[0]), click("r2", "erin", 123)]});
    let (status, json) = events(&c, addr, batch).await;
    assert_eq!((status, json["applied"].as_u64()), (200, Some(2)), "{json}");
    let after = top(&c, addr, "erin", 10).await;
    assert!(!after.contains(&before[0]) && after != before);

    // Redis killed: a user not cached gets the default profile, flagged; writes fail
    redis.kill();
    let (status, json) = recommend(&c, addr, r#"{"user_id":"frank"}"#, &[]).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["degraded"], json!(["features"]), "{json}");
    let (status, json) = events(&c, addr, json!({"events": [click("r3", "frank", 1)]})).await;
    assert!(status >= 500, "{status} {json}");
    assert!(json["message"]
        .as_str()
        .unwrap()
        .contains("retrying the whole request is safe"));

    // back on the same AOF: the acknowledged events are there, answers recover
    let _redis = Redis::start(dir.path(), redis.port, true);
    let json = poll(30, || async {
        let (s, j) = recommend(&c, addr, r#"{"user_id":"frank"}"#, &[]).await;
        (s == 200 && j["degraded"] == json!([])).then_some(j)
    })
    .await;
    assert_eq!(json["degraded"], json!([]));
    let (_, profile) = user(&c, admin, "erin").await;
    assert_eq!(profile["recent_items"], json!([123, before[0]]));
    node.shutdown().await;

    // a server that would acknowledge writes it has not synced is refused at start
    let dir2 = tempfile::tempdir().unwrap();
    let lax = Redis::start(dir2.path(), free_port(), false);
    let err = Node::start(redis_config(&lax.url()))
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("appendonly no"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_on_redis_see_each_others_writes_and_a_restarted_node_has_them_all() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::start(dir.path(), free_port(), true);
    let url = redis.url();
    let env = [
        ("RECD__FEATURES__STORE__BACKEND", "redis"),
        ("RECD__FEATURES__STORE__REDIS__URL", url.as_str()),
    ];
    let ports = [free_port(), free_port(), free_port()];
    let mut nodes = three_nodes_with(&ports, &env).await;
    let c = client();
    // every replica caches the users first, then each user clicks through one node
    let users: Vec<String> = (0..12).map(|i| format!("shared{i}")).collect();
    let mut first = Vec::new();
    for u in &users {
        for n in &nodes {
            top(&c, n.http, u, 10).await;
        }
        first.push(top(&c, nodes[0].http, u, 10).await[0]);
    }
    let mut acked: Vec<(String, String, u64)> = Vec::new();
    let mut slowest = Duration::ZERO;
    for (i, u) in users.iter().enumerate() {
        let via = &nodes[i % 3];
        let id = format!("s{i}");
        let (status, json) =
            events(&c, via.http, json!({"events": [click(&id, u, first[i])]})).await;
        assert_eq!(status, 200, "{json}");
        acked.push((id, u.clone(), first[i]));
        let written = Instant::now();
        // visible through every node: the clicked item is no longer recommended
        for n in &nodes {
            poll(10, || async {
                (!top(&c, n.http, u, 10).await.contains(&first[i])).then_some(())
            })
            .await;
        }
        slowest = slowest.max(written.elapsed());
    }
    println!(
        "a write was visible on every node within {slowest:?} (slowest of {})",
        users.len()
    );
    let mut heard = 0.0;
    for n in &nodes {
        let text = crate::common::metrics_text(&c, n.http).await;
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix("recd_write_visible_seconds_count "));
        heard += count
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
    }
    assert!(heard > 0.0, "no replica heard of another's write");
    println!("replicas heard {heard} changes made through others");

    // recd-2 killed, items changed, recd-2 restarted: it answers from Redis with every
    // acknowledged event and item change
    nodes.pop();
    // while recd-2 is down, items: one added through recd-1, one deleted through recd-0;
    // both answer with the changes (the shared item log), recd-0 from its acknowledgement on
    let (_, alice) = user(&c, nodes[0].admin, "shared1").await;
    let added = 4_000_000_u64;
    let url = format!("http://{}/v1/items/{added}", nodes[1].http);
    let body = json!({"embedding": alice["embedding"]}).to_string();
    let (status, json) = send(&c, reqwest::Method::PUT, url, Some(body)).await;
    assert_eq!(status, 200, "{json}");
    let gone = poll(30, || all(&c, nodes[0].http, "shared2")).await[0];
    let written = Instant::now();
    let url = format!("http://{}/v1/items/{gone}", nodes[0].http);
    let (status, json) = send(&c, reqwest::Method::DELETE, url, None).await;
    assert_eq!(status, 200, "{json}");
    let first = all(&c, nodes[0].http, "shared2").await;
    assert!(first.is_none_or(|a| !a.contains(&gone)));
    for n in &nodes {
        poll(10, || async {
            let answer = all(&c, n.http, "shared2").await?;
            (!answer.contains(&gone)).then_some(())
        })
        .await;
        poll(10, || async {
            all(&c, n.http, "shared1")
                .await?
                .contains(&added)
                .then_some(())
        })
        .await;
    }
    println!(
        "item changes visible on both nodes within {:?}",
        written.elapsed()
    );
    let restarted =
        crate::cluster::spawn_with("recd-2", "s3cret", ports[2], &[ports[0], ports[1]], &env);
    poll(120, || async {
        let r = c
            .get(format!("http://{}/readyz", restarted.http))
            .send()
            .await
            .ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let body: Vec<Value> = acked
        .iter()
        .map(|(id, u, item)| click(id, u, *item))
        .collect();
    let (status, json) = events(&c, restarted.http, json!({ "events": body })).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        json["duplicates"].as_u64(),
        Some(acked.len() as u64),
        "every acknowledged event is on record"
    );
    for (_, u, item) in &acked {
        let (_, profile) = user(&c, restarted.admin, u).await;
        assert_eq!(profile["recent_items"], json!([item]), "{u}");
    }
    // and it caught up with the item log while it was down
    let answer = poll(30, || all(&c, restarted.http, "shared2")).await;
    assert!(!answer.contains(&gone));
    let answer = poll(30, || all(&c, restarted.http, "shared1")).await;
    assert!(answer.contains(&added));
}
