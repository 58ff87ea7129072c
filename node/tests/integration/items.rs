//! Item writes on a real node: a new item is searchable at once, a deleted one is never
//! answered from the moment its delete is acknowledged — also while deletes, upserts and
//! reads run together — and both survive a restart (replayed into the index shards); a
//! catalogue with an ids file is served and written by those ids.

use crate::common::{client, config, small_data};
use crate::writes::{send, user};
use recd_node::Node;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every item of `id`'s answer with topk 200: all the re-ranked candidates.
async fn all_candidates(c: &reqwest::Client, addr: SocketAddr, id: &str) -> Vec<u64> {
    let body = format!(r#"{{"user_id":"{id}","topk":200}}"#);
    let (status, json) = crate::common::recommend(c, addr, &body, &[]).await;
    assert_eq!(status, 200, "{json}");
    (json["items"].as_array().unwrap().iter())
        .map(|i| i["id"].as_u64().unwrap())
        .collect()
}

async fn put_item(c: &reqwest::Client, addr: SocketAddr, id: u64, body: Value) -> (u16, Value) {
    let url = format!("http://{addr}/v1/items/{id}");
    send(c, reqwest::Method::PUT, url, Some(body.to_string())).await
}

async fn delete_item(c: &reqwest::Client, addr: SocketAddr, id: u64) -> (u16, Value) {
    send(
        c,
        reqwest::Method::DELETE,
        format!("http://{addr}/v1/items/{id}"),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_change_live_and_survive_a_restart() {
    let cfg = config(small_data());
    let node = Node::start(cfg.clone()).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.expect("admin port");
    let before = all_candidates(&c, addr, "u55").await;
    let gone = before[0];
    assert_eq!(delete_item(&c, addr, gone).await.0, 200);
    assert!(!all_candidates(&c, addr, "u55").await.contains(&gone));
    assert_eq!(
        delete_item(&c, addr, gone).await.0,
        200,
        "a delete is idempotent"
    );
    // a new id, pointing where u55 looks: found by the search at once
    let emb = user(&c, admin, "u55").await.1["embedding"].clone();
    let (status, json) = put_item(&c, addr, 9_000_001, json!({"embedding": emb})).await;
    assert_eq!(status, 200, "{json}");
    assert!(all_candidates(&c, addr, "u55").await.contains(&9_000_001));
    // events may name it now
    let ev = json!({"events": [{"event_id": "i1", "user_id": "u56", "item_id": 9_000_001, "type": "like"}]});
    assert_eq!(crate::writes::events(&c, addr, ev).await.0, 200);
    for (name, id, body, want) in [
        (
            "not a number",
            "abc".to_owned(),
            json!({"embedding": emb}),
            400,
        ),
        (
            "too large",
            (1u64 << 53).to_string(),
            json!({"embedding": emb}),
            400,
        ),
        ("short", "5".into(), json!({"embedding": [1.0]}), 400),
        (
            "zeros",
            "5".into(),
            json!({"embedding": vec![0.0; 64]}),
            400,
        ),
        (
            "unknown field",
            "5".into(),
            json!({"embedding": emb, "price": 3}),
            400,
        ),
    ] {
        let url = format!("http://{addr}/v1/items/{id}");
        let (status, json) = send(&c, reqwest::Method::PUT, url, Some(body.to_string())).await;
        assert_eq!(status, want, "{name}: {json}");
    }
    assert_eq!(delete_item(&c, addr, 123_456_789).await.0, 404);
    node.shutdown().await;

    // restarted on the same store: the delete and the new item are still in force
    let node = Node::start(cfg).await.unwrap();
    let after = all_candidates(&c, node.http_addr, "u55").await;
    assert!(
        !after.contains(&gone),
        "a deleted item came back after a restart"
    );
    assert!(
        after.contains(&9_000_001),
        "a new item was lost in a restart"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_items_are_never_returned_while_deletes_upserts_and_reads_run() {
    let node = Node::start(config(small_data())).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let users: Vec<String> = (0..6).map(|i| format!("u{}", 300 + i)).collect();
    // the items to delete: what these users are recommended now
    let mut targets: Vec<u64> = Vec::new();
    for u in &users {
        targets.extend(all_candidates(&c, addr, u).await.into_iter().take(8));
    }
    targets.sort_unstable();
    targets.dedup();
    let acked: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let deleter = {
        let (c, acked, targets) = (c.clone(), Arc::clone(&acked), targets.clone());
        tokio::spawn(async move {
            for id in targets {
                let (status, json) = delete_item(&c, addr, id).await;
                assert_eq!(status, 200, "{json}");
                acked.lock().unwrap().insert(id, Instant::now());
            }
        })
    };
    let upserter = {
        let c = c.clone();
        tokio::spawn(async move {
            for i in 0..40u64 {
                let emb: Vec<f32> = (0..64).map(|j| ((i * 7 + j) % 13) as f32 - 6.0).collect();
                let (status, json) =
                    put_item(&c, addr, 8_000_000 + i, json!({"embedding": emb})).await;
                assert_eq!(status, 200, "{json}");
            }
        })
    };
    let mut reads = 0;
    while !deleter.is_finished() || reads < 50 {
        for u in &users {
            let sent = Instant::now();
            let answer = all_candidates(&c, addr, u).await;
            let acked = acked.lock().unwrap();
            for id in &answer {
                if let Some(at) = acked.get(id) {
                    assert!(
                        *at > sent,
                        "item {id} answered after its delete was acknowledged"
                    );
                }
            }
            reads += 1;
        }
    }
    deleter.await.unwrap();
    upserter.await.unwrap();
    for u in &users {
        let answer = all_candidates(&c, addr, u).await;
        assert!(
            answer.iter().all(|id| !targets.contains(id)),
            "{u}: {answer:?}"
        );
    }
    println!(
        "{} deletes, 40 upserts, {reads} reads of 200 items: no deleted item answered",
        targets.len()
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_with_an_ids_file_is_served_by_its_ids() {
    let dir = tempfile::tempdir().unwrap();
    recd_actors::datagen::generate(dir.path(), 2000, 5, |_| {}).unwrap();
    let id_of = |row: u64| 5_000_000 + 7 * row;
    let ids: Vec<u8> = (0..2000u64).flat_map(|r| id_of(r).to_le_bytes()).collect();
    std::fs::write(dir.path().join(recd_actors::data::IDS_FILE), ids).unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let answer = all_candidates(&c, addr, "u9").await;
    assert_eq!(answer.len(), 200);
    assert!(
        answer
            .iter()
            .all(|&id| id >= 5_000_000 && (id - 5_000_000) % 7 == 0),
        "{answer:?}"
    );
    // writes name the external ids: a row number is an unknown item
    let ev = |item: u64| json!({"events": [{"event_id": format!("x{item}"), "user_id": "u9", "item_id": item, "type": "click"}]});
    assert_eq!(crate::writes::events(&c, addr, ev(answer[0])).await.0, 200);
    let (status, json) = crate::writes::events(&c, addr, ev(3)).await;
    assert_eq!(status, 400, "{json}");
    assert!(
        !all_candidates(&c, addr, "u9").await.contains(&answer[0]),
        "clicked, not recommended back"
    );
    assert_eq!(delete_item(&c, addr, answer[1]).await.0, 200);
    assert!(!all_candidates(&c, addr, "u9").await.contains(&answer[1]));
    node.shutdown().await;
    // a duplicate id is refused at load
    let dup: Vec<u8> = (0..2000u64).flat_map(|r| (r / 2).to_le_bytes()).collect();
    std::fs::write(dir.path().join(recd_actors::data::IDS_FILE), dup).unwrap();
    let err = Node::start(config(dir.path()))
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("appears twice"), "{err:#}");
}
