//! A/B assignment by deterministic hashing (docs/workload.md, DESIGN.md §5).
//!
//! `bucket = FNV-1a 64(salt ‖ user_id) % 100`; the user gets the first variant when
//! `bucket < split_percent`, the second otherwise. With an empty salt and a 50 % split
//! this is exactly the workload's rule. Scenarios live in `configs/ab_scenarios.yaml`.

use crate::features::profile::fnv1a64;
use anyhow::{ensure, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The contents of `ab_scenarios.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbScenarios {
    /// The running experiment.
    pub experiment: Experiment,
}

/// One two-variant experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Experiment name (logs, docs).
    pub name: String,
    /// Prepended to the user id before hashing; change it to reshuffle users.
    #[serde(default)]
    pub salt: String,
    /// Percentage of users (0..=100) in the first variant.
    pub split_percent: u8,
    /// The two variant names.
    pub variants: [String; 2],
}

impl Default for AbScenarios {
    fn default() -> Self {
        Self {
            experiment: Experiment {
                name: "workload-default".into(),
                salt: String::new(),
                split_percent: 50,
                variants: ["A".into(), "B".into()],
            },
        }
    }
}

impl AbScenarios {
    /// Loads and validates a scenarios file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let me: Self = recd_runtime::config::yaml::from_str(&text)
            .with_context(|| format!("parsing {}", path.display()))?;
        me.validate()?;
        Ok(me)
    }

    /// Checks the split and the variant names.
    pub fn validate(&self) -> anyhow::Result<()> {
        let e = &self.experiment;
        ensure!(
            e.split_percent <= 100,
            "experiment.split_percent must be 0..=100"
        );
        ensure!(
            !e.variants[0].is_empty() && e.variants[0] != e.variants[1],
            "experiment.variants must be two distinct non-empty names"
        );
        Ok(())
    }

    /// The variant of `user_id`.
    pub fn assign(&self, user_id: &str) -> &str {
        let e = &self.experiment;
        let h = if e.salt.is_empty() {
            fnv1a64(user_id)
        } else {
            fnv1a64(&format!("{}{user_id}", e.salt))
        };
        let i = usize::from(h % 100 >= e.split_percent as u64);
        &e.variants[i]
    }

    /// The variant named `name`, if it is one of this experiment's (for `X-Variant`).
    pub fn variant_named(&self, name: &str) -> Option<&str> {
        self.experiment
            .variants
            .iter()
            .find(|v| *v == name)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_workload_rule() {
        let ab = AbScenarios::default();
        for id in ["u0", "u1", "u42", "garbage", ""] {
            let want = if fnv1a64(id) % 100 < 50 { "A" } else { "B" };
            assert_eq!(ab.assign(id), want, "{id}");
        }
    }

    #[test]
    fn split_and_salt_move_users() {
        let mut ab = AbScenarios::default();
        ab.experiment.split_percent = 100;
        assert!((0..500).all(|i| ab.assign(&format!("u{i}")) == "A"));
        ab.experiment.split_percent = 20;
        let a = (0..10_000)
            .filter(|i| ab.assign(&format!("u{i}")) == "A")
            .count();
        assert!((1_700..2_300).contains(&a), "{a} of 10000 in A at 20 %");
        let unsalted: Vec<_> = (0..200)
            .map(|i| ab.assign(&format!("u{i}")).to_owned())
            .collect();
        ab.experiment.salt = "exp-7:".into();
        let salted: Vec<_> = (0..200)
            .map(|i| ab.assign(&format!("u{i}")).to_owned())
            .collect();
        assert_ne!(unsalted, salted);
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ab.yaml");
        std::fs::write(
            &p,
            "experiment: {name: x, split_percent: 101, variants: [A, B]}",
        )
        .unwrap();
        assert!(AbScenarios::load(&p).is_err());
        std::fs::write(
            &p,
            "experiment: {name: x, split_percent: 10, variants: [A, A]}",
        )
        .unwrap();
        assert!(AbScenarios::load(&p).is_err());
        std::fs::write(
            &p,
            "experiment: {name: x, split_percent: 10, variants: [A, B], typo: 1}",
        )
        .unwrap();
        assert!(AbScenarios::load(&p).is_err());
    }
}
