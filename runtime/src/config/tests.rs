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

fn tempfile_in() -> (std::path::PathBuf, std::fs::File) {
    let dir = std::env::temp_dir().join(format!("recd-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("c.yaml");
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
