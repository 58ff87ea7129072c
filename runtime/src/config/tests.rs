use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_validate() {
    let c = load(None, &[], env(&[])).unwrap();
    assert_eq!(c.index.shards, 2);
    assert_eq!(c.gateway.lanes.len(), 3);
    assert_eq!(c.per_shard_k(), 100);
}

#[test]
fn file_then_flags_then_env() {
    let mut f = tempfile_in();
    writeln!(
        f.1,
        "index:\n  shards: 2\nnode:\n  http_listen: 127.0.0.1:9000"
    )
    .unwrap();
    let overrides = vec![("node.http_listen".to_string(), "127.0.0.1:9001".to_string())];
    let c = load(
        Some(&f.0),
        &overrides,
        env(&[("RECD__INDEX__SHARDS", "8"), ("OTHER", "x")]),
    )
    .unwrap();
    assert_eq!(c.index.shards, 8);
    assert_eq!(c.node.http_listen, "127.0.0.1:9001");
    f.1.flush().unwrap();
}

#[test]
fn unknown_key_is_named() {
    let err = load(None, &[], env(&[("RECD__INDEX__SHARSD", "8")])).unwrap_err();
    assert!(format!("{err:#}").contains("sharsd"), "{err:#}");
}

#[test]
fn invalid_values_name_the_field() {
    let err = load(None, &[], env(&[("RECD__INDEX__SHARDS", "0")])).unwrap_err();
    assert!(format!("{err:#}").contains("index.shards"), "{err:#}");
    let err = load(None, &[], env(&[("RECD__GATEWAY__DEFAULT_LANE", "vip")])).unwrap_err();
    assert!(format!("{err:#}").contains("default_lane"), "{err:#}");
}

#[test]
fn the_roster_is_checked_and_roles_default_to_all() {
    let listen = ("RECD__CLUSTER__LISTEN", "127.0.0.1:7700");
    let cookie = ("RECD__CLUSTER__COOKIE", "c");
    let store = ("RECD__FEATURES__STORE__BACKEND", "none");
    let roster = |nodes: &str| env(&[listen, cookie, store, ("RECD__CLUSTER__NODES", nodes)]);
    let c = load(
        None,
        &[],
        roster("[{name: recd-0}, {name: recd-1, roles: [index]}]"),
    )
    .unwrap();
    assert!(Role::ALL.iter().all(|r| c.cluster.has_role(*r)));
    assert_eq!(c.cluster.nodes_with(Role::Ingress), ["recd-0"]);
    assert_eq!(c.cluster.nodes_with(Role::Index), ["recd-0", "recd-1"]);
    for (nodes, needle) in [
        ("[{name: recd-0}, {name: recd-0}]", "listed twice"),
        ("[{name: recd-1}]", "not in cluster.nodes"),
        (
            "[{name: recd-0, roles: [index, features, ranker]}]",
            "Ingress",
        ),
        ("[{name: recd-0, roles: []}]", "at least one role"),
        ("[{name: recd-0, roles: [cook]}]", "cook"),
    ] {
        let err = load(None, &[], roster(nodes)).unwrap_err();
        assert!(format!("{err:#}").contains(needle), "{nodes}: {err:#}");
    }
    let no_listen = env(&[("RECD__CLUSTER__NODES", "[{name: recd-0}, {name: recd-1}]")]);
    let err = load(None, &[], no_listen).unwrap_err();
    assert!(format!("{err:#}").contains("cluster.listen"), "{err:#}");
    let slow = env(&[("RECD__CLUSTER__HEARTBEAT_TIMEOUT_MS", "100")]);
    let err = load(None, &[], slow).unwrap_err();
    assert!(format!("{err:#}").contains("heartbeat"), "{err:#}");
}

#[test]
fn an_embedded_store_is_refused_for_a_replicated_cluster() {
    let listen = ("RECD__CLUSTER__LISTEN", "127.0.0.1:7700");
    let cookie = ("RECD__CLUSTER__COOKIE", "c");
    let err = load(None, &[], env(&[listen, cookie])).unwrap_err();
    assert!(format!("{err:#}").contains("replicated cluster"), "{err:#}");
    // one replica per shard, or no store: accepted
    let one = ("RECD__CLUSTER__REPLICAS", "1");
    assert!(load(None, &[], env(&[listen, cookie, one])).is_ok());
    let none = ("RECD__FEATURES__STORE__BACKEND", "none");
    assert!(load(None, &[], env(&[listen, cookie, none])).is_ok());
    let err = load(
        None,
        &[],
        env(&[("RECD__FEATURES__STORE__RECENT_ITEMS", "0")]),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("recent_items"), "{err:#}");
}

fn tempfile_in() -> (std::path::PathBuf, std::fs::File) {
    let dir = std::env::temp_dir().join(format!("recd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.yaml");
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
