//! `recd-node import users` on real files: a raw folder and a Parquet file written by
//! pyarrow (as a feature pipeline would), into the embedded store; a bad row refused by
//! number; and a node started on the store that serves the imported users. Likewise
//! `import items` (raw and Parquet): the node that starts on the store searches them.

use crate::common::{client, config, small_data};
use crate::writes::{top, user};
use recd_node::Node;
use std::path::Path;
use std::process::Command;

fn import(from: &Path, store: &Path) -> (bool, String) {
    import_what("users", from, store)
}

fn import_what(what: &str, from: &Path, store: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_recd-node"))
        .args(["import", what, "--from"])
        .arg(from)
        .arg("--data-dir")
        .arg(small_data())
        .env("RECD__FEATURES__STORE__DIR", store)
        .env("RECD__FEATURES__SHARDS", "2")
        .output()
        .expect("running recd-node import");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a pyarrow `script` that writes a Parquet file to `out` (its argv[1]).
fn pyarrow(script: &str, out: &Path) {
    let run = Command::new("python3")
        .args(["-c", script])
        .arg(out)
        .output();
    let run = run.expect("running python3");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "pyarrow: {err}");
}

fn unit(axis: usize) -> Vec<f32> {
    (0..64).map(|i| if i == axis { 1.0 } else { 0.0 }).collect()
}

fn write_raw(dir: &Path, ids: &[&str], embs: &[Vec<f32>]) {
    std::fs::write(dir.join("user_ids.txt"), ids.join("\n") + "\n").unwrap();
    let bytes: Vec<u8> = embs
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(dir.join("users.f32"), bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_users_are_served_and_a_bad_row_is_named() {
    let store = tempfile::tempdir().unwrap();
    let raw = tempfile::tempdir().unwrap();
    write_raw(raw.path(), &["alice", "bob"], &[unit(3), unit(40)]);
    let (ok, log) = import(raw.path(), store.path());
    assert!(ok, "{log}");
    assert!(log.contains("import: 2 users"), "{log}");

    // Parquet from pyarrow: list<float> embeddings, int64 recent items, a null feature list
    let pq = raw.path().join("users.parquet");
    let script = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
emb = [[1.0 if i == 9 else 0.0 for i in range(64)], [0.5] * 64]
t = pa.table({"user_id": ["carol", "dave"], "embedding": emb,
              "features": [[0.25] * 16, None], "recent_items": [[7, 8], []]})
pq.write_table(t, sys.argv[1])
"#;
    pyarrow(script, &pq);
    let (ok, log) = import(&pq, store.path());
    assert!(ok, "{log}");

    // a row of the wrong shape is refused by number
    let bad = tempfile::tempdir().unwrap();
    write_raw(
        bad.path(),
        &["erin", "frank"],
        &[unit(1), vec![f32::NAN; 64]],
    );
    let (ok, log) = import(bad.path(), store.path());
    assert!(!ok && log.contains("row 1 (user \"frank\")"), "{log}");

    let mut cfg = config(small_data());
    cfg.features.store.dir = Some(store.path().to_path_buf());
    let node = Node::start(cfg).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.expect("admin port");
    for u in ["alice", "bob", "carol", "dave", "erin"] {
        assert_eq!(
            user(&c, admin, u).await.1["known"],
            true,
            "{u} was imported"
        );
    }
    assert_eq!(user(&c, admin, "frank").await.1["known"], false);
    assert_eq!(
        user(&c, admin, "carol").await.1["recent_items"],
        serde_json::json!([7, 8])
    );
    assert_ne!(
        top(&c, addr, "alice", 10).await,
        top(&c, addr, "bob", 10).await
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_items_are_searched_and_a_bad_row_is_named() {
    let store = tempfile::tempdir().unwrap();
    let raw = tempfile::tempdir().unwrap();
    let ids: Vec<u8> = [9_000_001u64, 9_000_002]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    std::fs::write(raw.path().join("item_ids.u64"), ids).unwrap();
    let embs: Vec<u8> = (unit(5).into_iter().chain(unit(6)))
        .flat_map(|x| x.to_le_bytes())
        .collect();
    std::fs::write(raw.path().join("items.f32"), embs).unwrap();
    let (ok, log) = import_what("items", raw.path(), store.path());
    assert!(ok, "{log}");
    assert!(log.contains("import: 2 items"), "{log}");

    let pq = raw.path().join("items.parquet");
    let script = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
emb = [[1.0 if i == 7 else 0.0 for i in range(64)], [0.0] * 64]
t = pa.table({"item_id": pa.array([9000003, 9000004], pa.uint64()), "embedding": emb,
              "features": [[0.5] * 16, None]})
pq.write_table(t, sys.argv[1])
"#;
    pyarrow(script, &pq);
    // the second row's embedding is all zeros: refused by number, the first is kept
    let (ok, log) = import_what("items", &pq, store.path());
    assert!(
        !ok && log.contains("row 1") && log.contains("all zeros"),
        "{log}"
    );

    let mut cfg = config(small_data());
    cfg.features.store.dir = Some(store.path().to_path_buf());
    let node = Node::start(cfg).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    for (user_id, axis, item) in [
        ("ann", 5, 9_000_001u64),
        ("ben", 6, 9_000_002),
        ("cy", 7, 9_000_003),
    ] {
        let url = format!("http://{addr}/v1/users/{user_id}");
        let body = serde_json::json!({"embedding": unit(axis)}).to_string();
        let (status, json) = crate::writes::send(&c, reqwest::Method::PUT, url, Some(body)).await;
        assert_eq!(status, 200, "{json}");
        assert!(
            top(&c, addr, user_id, 200).await.contains(&item),
            "{user_id}: {item}"
        );
    }
    assert!(!top(&c, addr, "cy", 200).await.contains(&9_000_004));
    node.shutdown().await;
}
