//! Sizes come from the data: a node on a 32-d catalogue with 4 features serves, stores
//! and writes 32-d users and items (and refuses the workload's 64-d shapes, naming the
//! sizes it wants); a catalogue without mixture centres has no demo users but serves
//! stored ones; sizes outside the bounds are refused at start.

use crate::common::{client, config};
use crate::writes::{send, top, user};
use recd_actors::data::Schema;
use recd_node::Node;
use serde_json::json;
use std::net::SocketAddr;

const SMALL: Schema = Schema {
    dim: 32,
    feat_dim: 4,
};

async fn put(
    c: &reqwest::Client,
    addr: SocketAddr,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let url = format!("http://{addr}{path}");
    send(c, reqwest::Method::PUT, url, Some(body.to_string())).await
}

/// A unit vector along axis `i` of `dim`.
fn axis(dim: usize, i: usize) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[i] = 1.0;
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_32_dimension_catalogue_serves_and_takes_writes_of_its_sizes() {
    let dir = tempfile::tempdir().unwrap();
    recd_actors::datagen::generate_with(dir.path(), 3000, 9, SMALL, |_| {}).unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    let admin = node.admin_addr.expect("admin port");
    assert_eq!(top(&c, addr, "u5", 10).await.len(), 10, "a demo user");

    // the workload's sizes are refused with the catalogue's in the message
    let (status, body) = put(
        &c,
        addr,
        "/v1/users/alice",
        json!({"embedding": vec![0.1; 64]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("32 floats"), "{body}");
    let wide = json!({"embedding": axis(32, 0), "features": vec![0.5; 16]});
    let (status, body) = put(&c, addr, "/v1/users/alice", wide).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("features 4"), "{body}");

    // users of the catalogue's sizes differ, and read back at those sizes
    let alice = json!({"embedding": axis(32, 0), "features": [0.1, 0.2, 0.3, 0.4]});
    assert_eq!(put(&c, addr, "/v1/users/alice", alice).await.0, 200);
    let bob = json!({"embedding": axis(32, 1)});
    assert_eq!(put(&c, addr, "/v1/users/bob", bob).await.0, 200);
    let (a, b) = (
        top(&c, addr, "alice", 10).await,
        top(&c, addr, "bob", 10).await,
    );
    assert_ne!(a, b);
    let (status, stored) = user(&c, admin, "alice").await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(
        stored["embedding"].as_array().unwrap().len(),
        32,
        "{stored}"
    );
    assert_eq!(stored["features"].as_array().unwrap().len(), 4, "{stored}");

    // an item of the catalogue's sizes is a candidate at once; a 64-d one is refused
    let item = json!({"embedding": axis(32, 0), "features": [1.0, 0.0, 0.0, 0.0]});
    let (status, body) = put(&c, addr, "/v1/items/777777", item).await;
    assert_eq!(status, 200, "{body}");
    assert!(top(&c, addr, "alice", 200).await.contains(&777_777));
    let (status, body) = put(
        &c,
        addr,
        "/v1/items/777778",
        json!({"embedding": vec![0.1; 64]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("32 floats"), "{body}");
    let click = json!({"events": [{"event_id": "e1", "user_id": "bob", "item_id": 777_777, "type": "purchase"}]});
    let (status, body) = crate::writes::events(&c, addr, click).await;
    assert_eq!(status, 200, "{body}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_centres_there_are_no_demo_users_but_stored_ones_are_served() {
    let dir = tempfile::tempdir().unwrap();
    recd_actors::datagen::generate_with(dir.path(), 2000, 3, SMALL, |_| {}).unwrap();
    std::fs::remove_file(dir.path().join("centers.f32")).unwrap();
    // listed in meta.json, the file is required
    let err = recd_actors::data::Catalogue::load(dir.path())
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("centers.f32"), "{err:#}");
    let meta = dir.path().join("meta.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["sha256"].as_object_mut().unwrap().remove("centers.f32");
    std::fs::write(&meta, m.to_string()).unwrap();
    let node = Node::start(config(dir.path())).await.unwrap();
    let (c, addr) = (client(), node.http_addr);
    // u5 and an unknown id get the one default profile (the items' mean direction)
    assert_eq!(
        top(&c, addr, "u5", 10).await,
        top(&c, addr, "nobody", 10).await
    );
    let carol = json!({"embedding": axis(32, 3)});
    assert_eq!(put(&c, addr, "/v1/users/carol", carol).await.0, 200);
    assert_ne!(
        top(&c, addr, "carol", 10).await,
        top(&c, addr, "nobody", 10).await
    );
    node.shutdown().await;
}

#[test]
fn sizes_outside_the_bounds_are_refused() {
    for (dim, feat_dim) in [(1, 4), (5000, 4), (32, 2000)] {
        let s = Schema { dim, feat_dim };
        let dir = tempfile::tempdir().unwrap();
        let err = recd_actors::datagen::generate_with(dir.path(), 10, 1, s, |_| {});
        assert!(err.is_err(), "{dim}/{feat_dim} generated");
    }
    // a meta.json edited to other sizes than its files is refused at load
    let dir = tempfile::tempdir().unwrap();
    recd_actors::datagen::generate_with(dir.path(), 100, 1, SMALL, |_| {}).unwrap();
    let meta = dir.path().join("meta.json");
    let text = std::fs::read_to_string(&meta)
        .unwrap()
        .replace("\"dim\": 32", "\"dim\": 33");
    std::fs::write(&meta, text).unwrap();
    let err = recd_actors::data::Catalogue::load(dir.path())
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("items.f32"), "{err:#}");
    let text = std::fs::read_to_string(&meta)
        .unwrap()
        .replace("\"dim\": 33", "\"dim\": 9000");
    std::fs::write(&meta, text).unwrap();
    let err = recd_actors::data::Catalogue::load(dir.path())
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("outside 2..=4096"), "{err:#}");
}
