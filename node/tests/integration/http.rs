//! The HTTP edge: answers, validation errors, admission, deadlines, readiness, metrics.

use crate::common::{client, config, get_status, recommend, small_data};
use ractor::Actor;
use recd_actors::experiments::AbScenarios;
use recd_actors::ingress::state::ClusterView;
use recd_actors::ingress::state::IngressState;
use recd_actors::ingress::{Ingress, IngressArgs};
use recd_node::Node;
use recd_runtime::config::Role;
use recd_runtime::metrics::Metrics;
use recd_runtime::placement::Placement;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_have_topk_sorted_items_and_headers() {
    let node = Node::start(config(small_data())).await.unwrap();
    let client = client();
    for (lane, topk) in [("critical", 1), ("default", 10), ("background", 200)] {
        let resp = client
            .post(format!("http://{}/recommend", node.http_addr))
            .header("content-type", "application/json; charset=utf-8")
            .header("x-priority", lane)
            .body(format!(
                r#"{{"user_id":"u123","topk":{topk},"context":{{"device":"ios","ts":1699999999}}}}"#
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let timing = resp.headers()["server-timing"].to_str().unwrap().to_owned();
        for stage in [
            "queue;dur=",
            "features;dur=",
            "candidates;dur=",
            "rank;dur=",
            "total;dur=",
        ] {
            assert!(timing.contains(stage), "{timing}");
        }
        let header_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["request_id"], header_id.as_str());
        let items = json["items"].as_array().unwrap();
        assert_eq!(items.len(), topk, "{lane}");
        let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
        assert!(
            scores.windows(2).all(|w| w[0] >= w[1]),
            "sorted by score: {scores:?}"
        );
        let mut ids: Vec<u64> = items.iter().map(|i| i["id"].as_u64().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), topk, "no duplicate items");
    }
    // X-Variant forces the variant
    let natural = AbScenarios::default().assign("u123").to_owned();
    let other = if natural == "A" { "B" } else { "A" };
    let (status, json) = recommend(
        &client,
        node.http_addr,
        r#"{"user_id":"u123"}"#,
        &[("x-variant", other)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json["variant"], other);
    assert_eq!(
        json["items"].as_array().unwrap().len(),
        10,
        "topk defaults to 10"
    );
    node.shutdown().await;
}

/// name, body, headers, expected status, text the error message must contain
type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, u16, &'a str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error() {
    let node = Node::start(config(small_data())).await.unwrap();
    // a fresh connection per request: the server closes the one it refused a body on
    // (413), and a pooled client may otherwise reuse it for the next case and see EPIPE
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let long_id = format!(r#"{{"user_id":"{}"}}"#, "u".repeat(129));
    let cases: Vec<Case<'_>> = vec![
        (
            "malformed json",
            r#"{"user_id":"u1","#.into(),
            vec![],
            400,
            "invalid json",
        ),
        (
            "missing user_id",
            r#"{"topk":5}"#.into(),
            vec![],
            400,
            "user_id",
        ),
        ("overlong user_id", long_id, vec![], 400, "user_id must be"),
        (
            "control chars",
            r#"{"user_id":"u\u0001"}"#.into(),
            vec![],
            400,
            "printable",
        ),
        (
            "topk zero",
            r#"{"user_id":"u1","topk":0}"#.into(),
            vec![],
            400,
            "topk",
        ),
        (
            "topk too big",
            r#"{"user_id":"u1","topk":201}"#.into(),
            vec![],
            400,
            "topk",
        ),
        (
            "topk negative",
            r#"{"user_id":"u1","topk":-3}"#.into(),
            vec![],
            400,
            "invalid json",
        ),
        (
            "unknown field",
            r#"{"user_id":"u1","top_k":3}"#.into(),
            vec![],
            400,
            "top_k",
        ),
        (
            "unknown lane",
            r#"{"user_id":"u1"}"#.into(),
            vec![("x-priority", "vip")],
            400,
            "lane",
        ),
        (
            "bad deadline",
            r#"{"user_id":"u1"}"#.into(),
            vec![("x-deadline-ms", "soon")],
            400,
            "X-Deadline-Ms",
        ),
        (
            "zero deadline",
            r#"{"user_id":"u1"}"#.into(),
            vec![("x-deadline-ms", "0")],
            400,
            "X-Deadline-Ms",
        ),
        (
            "unknown variant",
            r#"{"user_id":"u1"}"#.into(),
            vec![("x-variant", "C")],
            400,
            "variant",
        ),
        (
            "not json",
            r#"{"user_id":"u1"}"#.into(),
            vec![("content-type", "text/plain")],
            415,
            "application/json",
        ),
        (
            "too large",
            format!(r#"{{"user_id":"u1","context":"{}"}}"#, "x".repeat(70_000)),
            vec![],
            413,
            "exceeds",
        ),
    ];
    for (name, body, headers, want, needle) in cases {
        let mut req = client
            .post(format!("http://{}/recommend", node.http_addr))
            .body(body);
        if !headers.iter().any(|(k, _)| *k == "content-type") {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{name}");
        let json: serde_json::Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("{name}: body is not json: {e}"));
        let message = json["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{name}: {json}");
        assert!(
            json["code"].is_string() && json["request_id"].is_string(),
            "{name}: {json}"
        );
    }
    let resp = client
        .get(format!("http://{}/no/such/route", node.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["code"],
        "not_found"
    );
    let resp = client
        .get(format!("http://{}/recommend", node.http_addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    // the node still serves after all of that
    let (status, _) = recommend(&client, node.http_addr, r#"{"user_id":"u1"}"#, &[]).await;
    assert_eq!(status, 200);
    let metrics = crate::common::metrics_text(&client, node.http_addr).await;
    assert!(
        metrics.contains(r#"recd_requests_total{lane="default",status="413",variant="none"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("recd_stage_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(metrics.contains("recd_batch_size_count"), "{metrics}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_bucket_answers_429_with_retry_after() {
    let mut c = config(small_data());
    c.ingress.rate_limit_rps = 1;
    c.ingress.rate_limit_burst = 2;
    let node = Node::start(c).await.unwrap();
    let client = client();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let resp = client
            .post(format!("http://{}/recommend", node.http_addr))
            .header("content-type", "application/json")
            .body(r#"{"user_id":"u7"}"#)
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        }
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_budget_answers_504() {
    let mut c = config(small_data());
    // fixed-delay batching ignores deadlines: the request sits out the 300 ms batch timer
    c.gateway.batching = recd_runtime::config::BatchingMode::Fixed;
    c.gateway.eager_when_idle = false;
    c.gateway.max_wait_us = 300_000;
    c.gateway.max_batch = 64;
    let node = Node::start(c).await.unwrap();
    let started = Instant::now();
    let (status, json) = recommend(
        &client(),
        node.http_addr,
        r#"{"user_id":"u1"}"#,
        &[("x-deadline-ms", "20")],
    )
    .await;
    assert_eq!(status, 504, "{json}");
    assert_eq!(json["code"], "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "answered at the deadline, not at the batch timer"
    );
    node.shutdown().await;
}

/// The `/cluster` view of a node alone that holds no shards yet.
fn standalone_view(c: &recd_runtime::config::Config) -> ClusterView {
    use recd_actors::remote::replicas::NodeReplicas;
    use recd_actors::stage::local::{LocalShards, LocalStages};
    let membership = recd_runtime::cluster::Membership::new("recd-0".into());
    let peers = recd_runtime::peers::Peers::new(Duration::from_secs(1), 1);
    let local = LocalStages::new(
        LocalShards::new(Vec::new(), c.features.shards),
        LocalShards::new(Vec::new(), c.index.shards),
        recd_runtime::pool::PoolSlots::new(0),
    );
    let replicas = NodeReplicas::new(Arc::new(local), None, Arc::clone(&membership));
    ClusterView {
        membership,
        peers,
        placement: Placement::for_cluster(&c.cluster, c.index.shards, c.features.shards),
        replicas: Arc::new(replicas),
        roles: Role::ALL.to_vec(),
        covered: AtomicBool::new(false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_answers_503_and_health_stays_200() {
    let c = config(small_data());
    let state = Arc::new(
        IngressState::new(
            &c,
            (AbScenarios::default(), None),
            Arc::new(Metrics::new()),
            Arc::new(recd_runtime::lanes::LaneSaturation::new(
                c.gateway.lanes.len(),
            )),
            standalone_view(&c),
            recd_runtime::pool::root::Health::new(),
        )
        .unwrap(),
    );
    let args = IngressArgs::bind("127.0.0.1:0".parse().unwrap(), None, state)
        .await
        .unwrap();
    let addr = args.addr().unwrap();
    let (ingress, _) = Actor::spawn(None, Ingress, args).await.unwrap();
    let client = client();
    let (status, json) = recommend(&client, addr, r#"{"user_id":"u1"}"#, &[]).await;
    assert_eq!(status, 503, "{json}");
    assert_eq!(json["code"], "unavailable");
    assert_eq!(get_status(&client, addr, "/readyz").await, 503);
    assert_eq!(get_status(&client, addr, "/healthz").await, 200);
    ingress.stop_and_wait(None, None).await.unwrap();
}
