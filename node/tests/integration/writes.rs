//! The write API on a real node over real HTTP, with the embedded redb store: users who
//! differ once written, a click that changes the answer and is not recommended back,
//! idempotent event batches, erasure, a bad-input battery that applies nothing, and
//! kill -9 right after acknowledgements losing nothing.

use crate::cluster::free_port_pair;
use crate::common::{client, config, poll, recommend, small_data};
use recd_node::Node;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn events(c: &reqwest::Client, addr: SocketAddr, body: Value) -> (u16, Value) {
    events_raw(c, addr, body.to_string()).await
}

pub(crate) async fn events_raw(
    c: &reqwest::Client,
    addr: SocketAddr,
    body: String,
) -> (u16, Value) {
    let url = format!("http://{addr}/v1/events");
    send(c, reqwest::Method::POST, url, Some(body)).await
}

pub(crate) async fn user(c: &reqwest::Client, addr: SocketAddr, id: &str) -> (u16, Value) {
    send(
        c,
        reqwest::Method::GET,
        format!("http://{addr}/v1/users/{id}"),
        None,
    )
    .await
}

pub(crate) async fn top(c: &reqwest::Client, addr: SocketAddr, id: &str, k: usize) -> Vec<u64> {
    let body = format!(r#"{{"user_id":"{id}","topk":{k}}}"#);
    let (status, json) = recommend(c, addr, &body, &[]).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["degraded"], json!([]), "{json}");
    (json["items"].as_array().unwrap().iter())
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

pub(crate) fn click(id: &str, user: &str, item: u64) -> Value {
    json!({"event_id": id, "user_id": user, "item_id": item, "type": "click"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_differ_once_written_and_a_click_is_not_recommended_back() {
    let node = Node::start(config(small_data())).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.expect("admin port");
    // two ids the demo rule does not know: the same default answer
    assert_eq!(
        top(&c, addr, "alice", 10).await,
        top(&c, addr, "bob", 10).await
    );
    // alice's profile from an offline job, bob's from his events
    let emb: Vec<f32> = (0..64)
        .map(|i| if i % 7 == 0 { 1.0 } else { 0.0 })
        .collect();
    let url = format!("http://{addr}/v1/users/alice");
    let body = json!({"embedding": emb, "recent_items": [1, 2]}).to_string();
    let (status, json) = send(&c, reqwest::Method::PUT, url, Some(body)).await;
    assert_eq!(status, 200, "{json}");
    let batch = json!({"events": [click("b1", "bob", 4000), click("b2", "bob", 4001), click("b3", "bob", 4002)]});
    let (status, json) = events(&c, addr, batch.clone()).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json, json!({"accepted": 3, "applied": 3, "duplicates": 0}));
    // visible the moment it is acknowledged: no polling
    let (alice, bob) = (
        top(&c, addr, "alice", 10).await,
        top(&c, addr, "bob", 10).await,
    );
    assert_ne!(alice, bob);
    assert!(!alice.contains(&1) && !alice.contains(&2));
    for item in [4000, 4001, 4002] {
        assert!(
            !bob.contains(&item),
            "{item} was clicked: not recommended back"
        );
    }
    let (status, profile) = user(&c, admin, "bob").await;
    assert_eq!(status, 200);
    assert_eq!(profile["known"], true);
    assert_eq!(profile["recent_items"], json!([4002, 4001, 4000]));
    // the same batch again (a retry): applied once
    let (_, json) = events(&c, addr, batch).await;
    assert_eq!(json, json!({"accepted": 3, "applied": 0, "duplicates": 3}));

    // a demo user's answer changes after one click, without the clicked item
    let before = top(&c, addr, "u77", 10).await;
    let (status, _) = events(
        &c,
        addr,
        json!({"events": [click("u77-1", "u77", before[0])]}),
    )
    .await;
    assert_eq!(status, 200);
    let after = top(&c, addr, "u77", 10).await;
    assert!(!after.contains(&before[0]), "{before:?} -> {after:?}");
    assert_ne!(before, after);

    // erasure: gone from the store and the cache; a second delete finds nothing
    let url = format!("http://{addr}/v1/users/alice");
    let (status, _) = send(&c, reqwest::Method::DELETE, url.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(user(&c, admin, "alice").await.1["known"], false);
    assert_eq!(
        top(&c, addr, "alice", 10).await,
        top(&c, addr, "nobody", 10).await
    );
    let (status, json) = send(&c, reqwest::Method::DELETE, url, None).await;
    assert_eq!((status, json["code"].as_str()), (404, Some("not_found")));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_get_a_clear_error_and_apply_nothing() {
    let mut cfg = config(small_data());
    cfg.features.store.max_events_per_call = 10;
    cfg.features.store.write_timeout_ms = 500;
    let node = Node::start(cfg).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.expect("admin port");
    let ev = |extra: Value| {
        let mut e = click("x1", "carol", 5);
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"events": [click("ok1", "carol", 6), e]}).to_string()
    };
    let long_id = "u".repeat(200);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not json", "{".into(), 400, "invalid json"),
        (
            "unknown field",
            r#"{"events":[],"x":1}"#.into(),
            400,
            "unknown field",
        ),
        ("no events", r#"{"events":[]}"#.into(), 400, "1..=10"),
        (
            "too many",
            json!({"events": vec![click("a", "carol", 1); 11]}).to_string(),
            400,
            "1..=10",
        ),
        (
            "unknown item",
            ev(json!({"item_id": 5000})),
            400,
            "events[1]: unknown item 5000",
        ),
        (
            "unknown type",
            ev(json!({"type": "poke"})),
            400,
            "events[1]: unknown type \"poke\"",
        ),
        (
            "zero weight",
            ev(json!({"weight": 0.0})),
            400,
            "events[1]: weight",
        ),
        (
            "huge weight",
            ev(json!({"weight": 1e9})),
            400,
            "events[1]: weight",
        ),
        (
            "empty user",
            ev(json!({"user_id": ""})),
            400,
            "events[1]: user_id",
        ),
        (
            "long user",
            ev(json!({"user_id": long_id})),
            400,
            "events[1]: user_id",
        ),
        (
            "control char",
            ev(json!({"user_id": "a\u{1}b"})),
            400,
            "printable",
        ),
        (
            "empty event id",
            ev(json!({"event_id": ""})),
            400,
            "events[1]: event_id",
        ),
        (
            "future ts",
            ev(json!({"ts": 99_999_999_999u64})),
            400,
            "a day ahead",
        ),
        (
            "negative item",
            ev(json!({"item_id": -1})),
            400,
            "invalid json",
        ),
    ];
    for (name, body, want, text) in cases {
        let (status, json) = events_raw(&c, addr, body).await;
        assert_eq!(status, want, "{name}: {json}");
        let message = json["message"].as_str().unwrap_or_default();
        assert!(message.contains(text), "{name}: {message}");
    }
    // the good first half of every refused batch was not applied
    assert_eq!(user(&c, admin, "carol").await.1["recent_items"], json!([]));

    let put = |body: Value| {
        let url = format!("http://{addr}/v1/users/dave");
        let c = c.clone();
        async move { send(&c, reqwest::Method::PUT, url, Some(body.to_string())).await }
    };
    let unit: Vec<f32> = (0..64).map(|i| (i == 3) as u8 as f32).collect();
    for (name, body, text) in [
        (
            "short embedding",
            json!({"embedding": [1.0, 2.0]}),
            "64 floats",
        ),
        (
            "zero embedding",
            json!({"embedding": vec![0.0; 64]}),
            "all zeros",
        ),
        (
            "long features",
            json!({"embedding": unit, "features": vec![0.1; 17]}),
            "features 16",
        ),
        (
            "unknown recent",
            json!({"embedding": unit, "recent_items": [9999]}),
            "unknown item 9999",
        ),
        (
            "no embedding",
            json!({"features": vec![0.1; 16]}),
            "missing field",
        ),
        // a value f16 cannot hold would not read back from the store
        (
            "huge feature",
            json!({"embedding": unit, "features": vec![1e6; 16]}),
            "within ±65504",
        ),
        (
            "tiny embedding",
            json!({"embedding": vec![1e-9; 64]}),
            "all zeros",
        ),
    ] {
        let (status, json) = put(body).await;
        assert_eq!(status, 400, "{name}: {json}");
        assert!(
            json["message"].as_str().unwrap().contains(text),
            "{name}: {json}"
        );
    }
    assert_eq!(
        user(&c, admin, "dave").await.1["known"],
        false,
        "nothing stored"
    );

    // wrong content type, oversized body, a path id that is too long, a wrong method
    let resp = (c.post(format!("http://{addr}/v1/events")))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // a body declared larger than the limit is refused before it is read (raw TCP: the
    // server answers and closes while a client would still be writing)
    assert!(raw(addr, "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2000000\r\n\r\n{").await.starts_with("HTTP/1.1 413"));
    assert_eq!(user(&c, admin, &long_id).await.0, 400);
    assert_eq!(
        send(
            &c,
            reqwest::Method::GET,
            format!("http://{addr}/v1/events"),
            None
        )
        .await
        .0,
        405
    );

    // a body that trickles in is cut at the write timeout (500 ms here)
    let answer = raw(addr, "POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"events\":[").await;
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer}");
    assert!(answer.contains("reading the request body"), "{answer}");
    node.shutdown().await;
}

/// Sends `request` (head and a partial body) on a fresh connection; the first answer.
async fn raw(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut answer))
        .await
        .expect("answered before the client gave up")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// Starts `recd-node run` on `data`, HTTP on `port` (the admin port on `port + 1`), the
/// store under `store`.
fn spawn_node(data: &std::path::Path, store: &std::path::Path, port: u16) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_recd-node"))
        .args([
            "run",
            "--http-listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data)
        .env("RECD__FEATURES__STORE__DIR", store)
        .env("RECD__DATA__GENERATE_IF_MISSING", "false")
        .env("RECD__COMPUTE__THREADS", "1")
        .env("RECD__ADMIN__LISTEN", format!("127.0.0.1:{}", port + 1))
        .env("RECD__ADMIN__TOKEN", crate::common::ADMIN_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting recd-node")
}

async fn ready(c: &reqwest::Client, addr: SocketAddr) {
    poll(120, || async {
        let r = c.get(format!("http://{addr}/readyz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_acknowledgements_loses_nothing() {
    let _one = crate::cluster::ONE_CLUSTER_AT_A_TIME.lock().await;
    let store = tempfile::tempdir().unwrap();
    let port = free_port_pair();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", port + 1).parse().unwrap();
    let c = client();
    let mut child = spawn_node(small_data(), store.path(), port);
    ready(&c, addr).await;
    // 8 writers, each a user: batches of 5 events as fast as acknowledgements come,
    // until the kill cuts them off
    let writers = (0..8).map(|w| {
        let c = c.clone();
        tokio::spawn(async move {
            let mut acked: Vec<(String, u64)> = Vec::new();
            for b in 0..1_000_000u64 {
                let batch: Vec<(String, u64)> = (0..5)
                    .map(|e| (format!("w{w}-{b}-{e}"), (b * 5 + e) % 5000))
                    .collect();
                let body: Vec<Value> = (batch.iter())
                    .map(|(id, item)| click(id, &format!("writer{w}"), *item))
                    .collect();
                // the kill cuts the connection: that batch is not acknowledged
                let sent = (c.post(format!("http://{addr}/v1/events")))
                    .header("content-type", "application/json")
                    .body(json!({ "events": body }).to_string())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.extend(batch),
                    _ => break,
                }
            }
            acked
        })
    });
    let writers: Vec<_> = writers.collect();
    // kill once writes are flowing: at least 200 acknowledged
    poll(60, || async {
        let m = crate::common::metrics_text(&c, addr).await;
        (crate::common::metric_sum(&m, "recd_writes_total", &["outcome=\"applied\""]) >= 200.0)
            .then_some(())
    })
    .await;
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let mut acked = Vec::new();
    for w in writers {
        acked.push(w.await.unwrap());
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    let mut child = spawn_node(small_data(), store.path(), port);
    ready(&c, addr).await;
    let mut found = 0;
    for (w, events_of) in acked.iter().enumerate() {
        // the ring holds the newest 16, most recent first: the acknowledged ones, after at
        // most one batch (5) that was applied but not yet acknowledged at the kill
        let want: Vec<u64> = events_of.iter().rev().take(16).map(|e| e.1).collect();
        let (status, profile) = user(&c, admin, &format!("writer{w}")).await;
        assert_eq!(status, 200);
        let got: Vec<u64> = (profile["recent_items"].as_array().unwrap().iter())
            .map(|v| v.as_u64().unwrap())
            .collect();
        let lost = || format!("writer{w}: acknowledged {want:?} (newest first), stored {got:?}");
        if let Some(&newest) = want.first() {
            let extra =
                (got.iter().position(|&i| i == newest)).unwrap_or_else(|| panic!("{}", lost()));
            assert!(extra <= 5, "{}", lost());
            let kept = (16 - extra).min(want.len());
            assert_eq!(&got[extra..extra + kept], &want[..kept], "{}", lost());
        }
        // every acknowledged event is on record: sent again, each is a duplicate
        for chunk in events_of.chunks(1000) {
            let body: Vec<Value> = (chunk.iter())
                .map(|(id, item)| click(id, &format!("writer{w}"), *item))
                .collect();
            let (status, json) = events(&c, addr, json!({ "events": body })).await;
            assert_eq!(status, 200, "{json}");
            found += json["duplicates"].as_u64().unwrap() as usize;
        }
    }
    assert_eq!(found, total, "acknowledged events lost across kill -9");
    println!("kill -9 after {total} acknowledged events: {found} found after restart");
    let _ = child.kill();
    let _ = child.wait();
}
