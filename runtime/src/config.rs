//! Configuration schema, layered loading and validation.
//!
//! Layers, later wins: built-in defaults → `--config FILE` (YAML) → command-line flags →
//! `RECD__SECTION__KEY` environment variables. All layers are merged as a YAML tree and
//! deserialised once with `deny_unknown_fields`, so a misspelt key anywhere is an error
//! naming the key. The loader takes the environment as an argument: tests never touch
//! the process environment.

mod access;
mod cluster;
mod models;
mod schema;
mod store;

pub use schema::*;
pub use store::{RedisConfig, StoreBackend, StoreConfig};

/// The YAML parser recd uses for every config file (re-exported so all crates agree).
pub mod yaml {
    pub use serde_yaml_ng::from_str;
}

use anyhow::{bail, Context};
use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

/// Environment variable prefix for overrides: `RECD__INDEX__SHARDS=8`.
pub const ENV_PREFIX: &str = "RECD__";

/// Loads a config: defaults, then `file` (if any), then `overrides` (`section.key` →
/// value, from flags), then env vars from `env`. Validates the result.
pub fn load(
    file: Option<&Path>,
    overrides: &[(String, String)],
    env: impl IntoIterator<Item = (String, String)>,
) -> anyhow::Result<Config> {
    let mut tree = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config {}", path.display()))?;
            let v: Value = serde_yaml_ng::from_str(&text)
                .with_context(|| format!("parsing config {}", path.display()))?;
            match v {
                Value::Null => Value::Mapping(Mapping::new()),
                v @ Value::Mapping(_) => v,
                _ => bail!("config {} must be a YAML mapping", path.display()),
            }
        }
        None => Value::Mapping(Mapping::new()),
    };
    for (key, value) in overrides {
        set_path(&mut tree, key, value).with_context(|| format!("override {key}"))?;
    }
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect();
    env.sort();
    for (key, value) in env {
        let path = key[ENV_PREFIX.len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        set_path(&mut tree, &path, &value).with_context(|| format!("env {key}"))?;
    }
    let config: Config = serde_yaml_ng::from_value(tree).context("invalid config")?;
    config.validate()?;
    Ok(config)
}

/// Sets `a.b.c` in a YAML tree to `raw`, parsed as a YAML scalar (so `8` is a number).
fn set_path(tree: &mut Value, dotted: &str, raw: &str) -> anyhow::Result<()> {
    let parts: Vec<&str> = dotted.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        bail!("bad key path {dotted:?}");
    }
    let parsed: Value = serde_yaml_ng::from_str(raw).unwrap_or(Value::String(raw.to_owned()));
    let mut node = tree;
    for (i, part) in parts.iter().enumerate() {
        let map = match node {
            Value::Mapping(m) => m,
            _ => bail!("{dotted}: {} is not a section", parts[..i].join(".")),
        };
        let key = Value::String((*part).to_owned());
        if i + 1 == parts.len() {
            map.insert(key, parsed);
            return Ok(());
        }
        node = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
