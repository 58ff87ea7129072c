//! Every shipped config file loads and validates.

use recd_actors::experiments::AbScenarios;
use std::path::Path;

#[test]
fn every_config_file_loads_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        if path.file_name().unwrap() == "ab_scenarios.yaml" {
            AbScenarios::load(&path).unwrap();
        } else {
            // cluster profiles take the cookie from the environment (a Secret), never the file
            let env = vec![("RECD__CLUSTER__COOKIE".to_string(), "test".to_string())];
            recd_runtime::config::load(Some(&path), &[], env)
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        }
        seen += 1;
    }
    assert!(
        seen >= 2,
        "configs/ holds dev.yaml and ab_scenarios.yaml at least"
    );
}

#[test]
fn env_overrides_config_file() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/dev.yaml");
    let env = vec![("RECD__INDEX__SHARDS".to_string(), "3".to_string())];
    let flags = vec![("node.http_listen".to_string(), "127.0.0.1:9999".to_string())];
    let c = recd_runtime::config::load(Some(&path), &flags, env).unwrap();
    assert_eq!(c.index.shards, 3);
    assert_eq!(c.node.http_listen, "127.0.0.1:9999");
}
