//! Supervision under load: a panicking shard or ranker actor is restarted by its pool
//! supervisor; requests meanwhile get a flagged fallback, never a 5xx.

use crate::common::{client, config, get_status, poll, recommend, small_data, WIDE_BUDGET};
use recd_node::Node;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

async fn inject(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    pool: &str,
    slot: usize,
) -> u16 {
    client
        .post(format!("http://{addr}/admin/fault"))
        .body(format!(r#"{{"pool":"{pool}","slot":{slot}}}"#))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls with fresh users until a 200 answer satisfies `pred`.
async fn until_answer(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let mut i = 0u64;
    poll(10, || {
        i += 1;
        let body = format!(r#"{{"user_id":"u{i}"}}"#);
        let pred = &pred;
        async move {
            let (status, json) = recommend(client, addr, &body, &[]).await;
            assert_eq!(status, 200, "{json}");
            pred(&json).then_some(())
        }
    })
    .await
}

fn degraded(json: &serde_json::Value, stage: &str) -> bool {
    json["degraded"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == stage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_actors_restart_and_requests_fall_back_under_load() {
    let mut c = config(small_data());
    c.admin.fault_injection = true;
    c.ranker.workers = 1;
    c.supervision.backoff_ms = 1500; // keeps a dead slot empty long enough to observe
    let node = Node::start(c).await.unwrap();
    let (addr, admin) = (node.http_addr, node.admin_addr.unwrap());
    let client = client();

    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|t| {
            let (client, stop) = (client.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!(r#"{{"user_id":"u{}","topk":20}}"#, t * 1_000_000 + n);
                    let (status, json) = recommend(&client, addr, &body, &[]).await;
                    if status == 200 {
                        assert_eq!(json["items"].as_array().unwrap().len(), 20);
                    }
                    statuses.push(status);
                }
                statuses
            })
        })
        .collect();

    assert_eq!(inject(&client, admin, "ranker", 0).await, 202);
    until_answer(&client, addr, |j| degraded(j, "ranker")).await;
    until_answer(&client, addr, |j| {
        j["degraded"].as_array().unwrap().is_empty()
    })
    .await;

    assert_eq!(inject(&client, admin, "index", 1).await, 202);
    until_answer(&client, addr, |j| {
        degraded(j, "candidates") && j["coverage"] == 0.5
    })
    .await;
    assert_eq!(get_status(&client, addr, "/readyz").await, 503);
    until_answer(&client, addr, |j| j["coverage"] == 1.0).await;

    assert_eq!(inject(&client, admin, "features", 0).await, 202);
    until_answer(&client, addr, |j| degraded(j, "features")).await;
    let restarts = node.metrics.actor_restarts.with_label_values(&["features"]);
    poll(10, || {
        let done = restarts.get() == 1;
        async move { done.then_some(()) }
    })
    .await;

    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for l in load {
        statuses.extend(l.await.unwrap());
    }
    assert!(statuses.len() > 30, "load ran: {} requests", statuses.len());
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "non-200 answers under faults: {failed:?}"
    );

    let m = &node.metrics;
    for pool in ["ranker", "index", "features"] {
        assert_eq!(
            m.actor_restarts.with_label_values(&[pool]).get(),
            1,
            "{pool} restarts"
        );
    }
    assert!(m.degraded.with_label_values(&["ranker"]).get() >= 1);
    assert_eq!(
        inject(&client, admin, "ranker", 7).await,
        503,
        "no such slot"
    );
    assert_eq!(inject(&client, admin, "model", 0).await, 400);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_is_off_by_default_and_only_on_the_admin_port_with_its_token() {
    let node = Node::start(config(small_data())).await.unwrap();
    let admin = node.admin_addr.unwrap();
    assert_eq!(
        inject(&client(), admin, "ranker", 0).await,
        404,
        "off by default"
    );
    node.shutdown().await;

    let mut c = config(small_data());
    c.admin.fault_injection = true;
    let node = Node::start(c).await.unwrap();
    let (addr, admin) = (node.http_addr, node.admin_addr.unwrap());
    assert_eq!(
        inject(&client(), addr, "ranker", 0).await,
        404,
        "not on the public port"
    );
    let no_token = reqwest::Client::new();
    assert_eq!(inject(&no_token, admin, "ranker", 0).await, 401);
    let wrong = no_token
        .post(format!("http://{admin}/admin/fault"))
        .header("authorization", "Bearer test-admin-token-0123456780")
        .body(r#"{"pool":"ranker","slot":0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["code"], "unauthenticated", "{body}");
    for path in [
        "/cluster",
        "/admin/models",
        "/admin/experiments",
        "/v1/users/u1",
    ] {
        assert_eq!(
            get_status(&client(), addr, path).await,
            if path.starts_with("/v1") { 405 } else { 404 },
            "{path} on the public port"
        );
        let status = no_token
            .get(format!("http://{admin}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 401, "{path} without the token");
        assert_ne!(
            get_status(&client(), admin, path).await,
            401,
            "{path} with the token"
        );
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_past_its_restart_budget_makes_the_node_unhealthy() {
    let mut c = config(small_data());
    c.admin.fault_injection = true;
    c.supervision.max_restarts = 1;
    c.supervision.backoff_ms = 1;
    let node = Node::start(c).await.unwrap();
    let (client, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.unwrap();
    assert_eq!(get_status(&client, addr, "/healthz").await, 200);
    // the first panic is restarted within the budget; the node stays healthy
    assert_eq!(inject(&client, admin, "features", 0).await, 202);
    poll(10, || async {
        let live = node
            .metrics
            .pool_live
            .with_label_values(&["features"])
            .get();
        let restarts = node
            .metrics
            .actor_restarts
            .with_label_values(&["features"])
            .get();
        (restarts == 1 && live == 2).then_some(())
    })
    .await;
    assert_eq!(get_status(&client, addr, "/healthz").await, 200);
    // the second exhausts it: the slot stays empty and the node says so
    assert_eq!(inject(&client, admin, "features", 0).await, 202);
    poll(10, || async {
        (get_status(&client, addr, "/healthz").await == 500).then_some(())
    })
    .await;
    let body: serde_json::Value = client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("pool features slot 0 failed 2 times"),
        "{message}"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_ingress_is_restarted_on_the_same_ports() {
    let mut c = config(small_data());
    c.admin.fault_injection = true;
    c.supervision.backoff_ms = 200; // long enough for requests to arrive while it is down
    let node = Node::start(c).await.unwrap();
    let (addr, admin) = (node.http_addr, node.admin_addr.unwrap());
    // fresh connections for every request: each has to be accepted by a live ingress
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (client, stop) = (fresh.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = format!(r#"{{"user_id":"u{}"}}"#, statuses.len());
                // wide budgets: a request waits through the restart
                statuses.push(recommend(&client, addr, &body, &[WIDE_BUDGET]).await.0);
            }
            statuses
        })
    };
    let restarts = node.metrics.actor_restarts.with_label_values(&["ingress"]);
    assert_eq!(inject(&client(), admin, "ingress", 0).await, 202);
    poll(10, || {
        let done = restarts.get() == 1;
        async move { done.then_some(()) }
    })
    .await;
    // the restarted ingress serves both ports at the same addresses
    let (status, _) = recommend(&fresh, addr, r#"{"user_id":"u1"}"#, &[WIDE_BUDGET]).await;
    assert_eq!(status, 200);
    assert_eq!(get_status(&client(), admin, "/cluster").await, 200);
    stop.store(true, Ordering::Relaxed);
    let statuses = load.await.unwrap();
    assert!(statuses.len() > 10, "load ran: {}", statuses.len());
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every request answered 200 across the restart: {statuses:?}"
    );
    assert_eq!(get_status(&client(), addr, "/healthz").await, 200);
    assert_eq!(restarts.get(), 1);
    node.shutdown().await;
}
