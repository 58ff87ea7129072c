//! A/B assignment by deterministic hashing (docs/workload.md, DESIGN.md §5), and what
//! each variant runs.
//!
//! `bucket = FNV-1a 64(salt ‖ user_id) % 100`; the user gets the first variant when
//! `bucket < split_percent`, the second otherwise. With an empty salt and a 50 % split
//! this is exactly the workload's rule. Scenarios live in `configs/ab_scenarios.yaml`;
//! each variant binds the model it scores with (`name` or `name@version`), how many
//! candidates it re-ranks and how wide its ANN search walks ([`Plan`], resolved against
//! the node's defaults at start; the pipeline runs each variant's requests with its own).

pub mod shadow;

use crate::features::profile::fnv1a64;
use crate::types::{Cascade, ModelRef};
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
    /// The two variants.
    pub variants: [Variant; 2],
    /// A variant run beside the primary one for a share of users, never answered,
    /// only compared ([`shadow`]).
    #[serde(default)]
    pub shadow: Option<Shadow>,
}

/// The shadow of an experiment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shadow {
    /// What the shadow runs.
    pub variant: Variant,
    /// Percentage of users (0..=100, by hash) whose requests are shadowed; a request may
    /// also ask with `X-Shadow: 1`.
    pub fraction_percent: u8,
}

/// A variant and what it runs (every field but the name defaults to the node's config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Its name (in answers, metrics and `X-Variant`).
    pub name: String,
    /// The model it scores with: `name` (newest or pinned version) or `name@version`.
    #[serde(default)]
    pub model: Option<String>,
    /// Candidates merged from the shards and re-ranked (1..=4096).
    #[serde(default)]
    pub candidates: Option<usize>,
    /// ANN search breadth per shard (at most 4096; never below what is asked).
    #[serde(default)]
    pub ef: Option<usize>,
    /// Score through a cheaper first model: it scores every candidate, `model`
    /// re-ranks its best `rerank`.
    #[serde(default)]
    pub cascade: Option<CascadeConfig>,
}

/// A variant's cascade.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// The first model (`name` or `name@version`), e.g. a distilled student.
    pub model: String,
    /// Candidates the variant's model re-ranks (1..=4096).
    pub rerank: usize,
}

impl Variant {
    fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            model: None,
            candidates: None,
            ef: None,
            cascade: None,
        }
    }

    fn plan(&self, d: &PlanDefaults) -> Plan {
        let candidates = self.candidates.unwrap_or(d.candidates);
        let per_shard = d.per_shard_factor * candidates as f32 / d.shards.max(1) as f32;
        let per_shard_k = (per_shard.ceil() as usize).clamp(1, candidates);
        let model = self.model.as_deref().unwrap_or(&d.model);
        Plan {
            variant: self.name.clone(),
            model: ModelRef::parse(model).unwrap_or_else(|_| ModelRef::latest(&d.model)),
            candidates,
            per_shard_k,
            ef: self.ef.unwrap_or(0).max(per_shard_k),
            cascade: (self.cascade.as_ref()).and_then(|c| {
                let first = ModelRef::parse(&c.model).ok()?;
                Some(Cascade {
                    first,
                    keep: c.rerank,
                })
            }),
        }
    }
}

/// The node's defaults a variant's [`Plan`] starts from.
#[derive(Debug, Clone)]
pub struct PlanDefaults {
    /// `models.default`.
    pub model: String,
    /// `index.candidates`.
    pub candidates: usize,
    /// `index.shards`.
    pub shards: usize,
    /// `index.per_shard_factor`.
    pub per_shard_factor: f32,
}

/// What one variant's requests run.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The variant's name.
    pub variant: String,
    /// The model scored with.
    pub model: ModelRef,
    /// Candidates kept after the merge (and re-ranked).
    pub candidates: usize,
    /// Items asked of each index shard.
    pub per_shard_k: usize,
    /// Search breadth of each shard call.
    pub ef: usize,
    /// Scored through a cheaper first model, when set.
    pub cascade: Option<Cascade>,
}

impl Default for AbScenarios {
    fn default() -> Self {
        Self {
            experiment: Experiment {
                name: "workload-default".into(),
                salt: String::new(),
                split_percent: 50,
                variants: [Variant::named("A"), Variant::named("B")],
                shadow: None,
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

    /// Checks the split, the variant names and what they bind.
    pub fn validate(&self) -> anyhow::Result<()> {
        let e = &self.experiment;
        ensure!(
            e.split_percent <= 100,
            "experiment.split_percent must be 0..=100"
        );
        let [a, b] = &e.variants;
        ensure!(
            !a.name.is_empty() && a.name != b.name,
            "experiment.variants must have two distinct non-empty names"
        );
        if let Some(sh) = &e.shadow {
            ensure!(
                sh.fraction_percent <= 100,
                "experiment.shadow.fraction_percent must be 0..=100"
            );
            ensure!(
                !sh.variant.name.is_empty() && e.variants.iter().all(|v| v.name != sh.variant.name),
                "experiment.shadow.variant needs a name of its own"
            );
        }
        for v in e
            .variants
            .iter()
            .chain(e.shadow.as_ref().map(|s| &s.variant))
        {
            if let Some(m) = &v.model {
                ModelRef::parse(m).map_err(|err| anyhow::anyhow!("variant {}: {err}", v.name))?;
            }
            ensure!(
                v.candidates.is_none_or(|c| (1..=4096).contains(&c)),
                "variant {}: candidates must be 1..=4096",
                v.name
            );
            ensure!(
                v.ef.is_none_or(|ef| ef <= 4096),
                "variant {}: ef must be at most 4096",
                v.name
            );
            if let Some(c) = &v.cascade {
                ModelRef::parse(&c.model)
                    .map_err(|err| anyhow::anyhow!("variant {}: cascade: {err}", v.name))?;
                ensure!(
                    (1..=4096).contains(&c.rerank),
                    "variant {}: cascade.rerank must be 1..=4096",
                    v.name
                );
            }
        }
        Ok(())
    }

    /// Each variant's plan, in variant order, with the node's defaults filled in.
    pub fn plans(&self, d: &PlanDefaults) -> Vec<Plan> {
        (self.experiment.variants.iter())
            .map(|v| v.plan(d))
            .collect()
    }

    /// The shadow variant's plan, if the experiment has one.
    pub fn shadow_plan(&self, d: &PlanDefaults) -> Option<Plan> {
        (self.experiment.shadow.as_ref()).map(|s| s.variant.plan(d))
    }

    /// Whether `user_id`'s requests are shadowed (by hash, apart from the A/B bucket).
    pub fn shadows(&self, user_id: &str) -> bool {
        let Some(s) = &self.experiment.shadow else {
            return false;
        };
        let h = fnv1a64(&format!("shadow:{}{user_id}", self.experiment.salt));
        h % 100 < u64::from(s.fraction_percent)
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
        &e.variants[i].name
    }

    /// The variant named `name`, if it is one of this experiment's (for `X-Variant`).
    pub fn variant_named(&self, name: &str) -> Option<&str> {
        self.experiment
            .variants
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.name.as_str())
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
    fn variants_bind_what_they_run() {
        let ab: AbScenarios = recd_runtime::config::yaml::from_str(
            "experiment: {name: x, split_percent: 50, variants: [{name: A}, \
             {name: B, model: student@3, candidates: 100, ef: 300}]}",
        )
        .unwrap();
        ab.validate().unwrap();
        let d = PlanDefaults {
            model: "ranker".into(),
            candidates: 200,
            shards: 2,
            per_shard_factor: 1.0,
        };
        let [a, b]: [Plan; 2] = ab.plans(&d).try_into().unwrap();
        assert_eq!(
            (a.model.to_string(), a.candidates, a.per_shard_k, a.ef),
            ("ranker".into(), 200, 100, 100)
        );
        assert_eq!(
            (b.model.to_string(), b.candidates, b.per_shard_k, b.ef),
            ("student@3".into(), 100, 50, 300)
        );
    }

    #[test]
    fn bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ab.yaml");
        std::fs::write(
            &p,
            "experiment: {name: x, split_percent: 101, variants: [{name: A}, {name: B}]}",
        )
        .unwrap();
        assert!(AbScenarios::load(&p).is_err());
        std::fs::write(
            &p,
            "experiment: {name: x, split_percent: 10, variants: [{name: A}, {name: A}]}",
        )
        .unwrap();
        assert!(AbScenarios::load(&p).is_err());
        std::fs::write(
            &p,
            "experiment: {name: x, split_percent: 10, variants: [{name: A}, {name: B}], typo: 1}",
        )
        .unwrap();
        assert!(AbScenarios::load(&p).is_err());
        for bad in ["model: a@b", "model: ../x", "candidates: 0", "ef: 5000"] {
            let text = format!(
                "experiment: {{name: x, split_percent: 10, variants: [{{name: A}}, {{name: B, {bad}}}]}}"
            );
            std::fs::write(&p, text).unwrap();
            assert!(AbScenarios::load(&p).is_err(), "{bad}");
        }
    }
}
