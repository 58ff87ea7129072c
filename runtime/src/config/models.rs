//! `models`: the model repository the rankers serve from (Triton-like
//! `<dir>/<name>/<version>/`), how often it is polled, and pinned versions.

use anyhow::{bail, ensure};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The model repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelsConfig {
    /// Folder of models, `<dir>/<name>/<version>/model.yaml`; none serves only the
    /// catalogue's `mlp.f32` (as `ranker@0`).
    pub dir: Option<PathBuf>,
    /// The model a request runs when its variant names none.
    pub default: String,
    /// How often the folder is scanned for new versions (ms; `POST /admin/models/reload`
    /// scans at once).
    pub poll_ms: u64,
    /// Models served at a fixed version instead of their newest (`name: version`).
    pub pin: BTreeMap<String, u32>,
    /// A cheaper model (a distilled student) that scores every candidate when a batch's
    /// budget cannot pay for its variant's model (`degraded: rank_student`); none: the
    /// ladder truncates instead.
    pub fallback: Option<String>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            dir: None,
            default: "ranker".into(),
            poll_ms: 2000,
            pin: BTreeMap::new(),
            fallback: None,
        }
    }
}

/// Whether `name` may name a model: 1..=64 of `[A-Za-z0-9_-]` (it is a folder name).
pub fn valid_model_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ModelsConfig {
    /// Names the bad field, if any.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            valid_model_name(&self.default),
            "models.default {:?} is not a model name ([A-Za-z0-9_-], 1..=64)",
            self.default
        );
        ensure!(
            (100..=3_600_000).contains(&self.poll_ms),
            "models.poll_ms must be 100..=3600000"
        );
        if let Some(f) = &self.fallback {
            let (name, version) = match f.split_once('@') {
                Some((n, v)) => (n, Some(v)),
                None => (f.as_str(), None),
            };
            let version_ok = version
                .is_none_or(|v| v.bytes().all(|b| b.is_ascii_digit()) && v.parse::<u32>().is_ok());
            ensure!(
                valid_model_name(name) && version_ok,
                "models.fallback {f:?} is not a model (name or name@version)"
            );
        }
        for name in self.pin.keys() {
            if !valid_model_name(name) {
                bail!("models.pin: {name:?} is not a model name");
            }
        }
        Ok(())
    }
}
