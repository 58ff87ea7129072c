//! The in-process recommendation kernel: features → ANN over every shard → merge →
//! MLP → top-k for one request, with no HTTP, no actors and no batching. It is the
//! reference the served path is measured against (`recd-node bench-kernel`) and the
//! harness of the golden-value tests.

use crate::candidates::ann::AnnIndex;
use crate::candidates::index::merge;
use crate::candidates::open;
use crate::data::Catalogue;
use crate::features::profile::ProfileSource;
use crate::items::Items;
use crate::ranker::model::{top_k, Model, ScoreInput};
use recd_runtime::config::Config;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything one request needs, loaded in memory.
pub struct Kernel {
    /// Items and features.
    pub items: Items,
    /// Profile source.
    pub source: ProfileSource,
    /// Index shards.
    pub shards: Vec<Arc<dyn AnnIndex>>,
    /// The model (the catalogue's `mlp.f32`).
    pub model: Arc<Model>,
    /// Items asked of each shard.
    pub per_shard_k: usize,
    /// Candidates re-ranked.
    pub candidates: usize,
}

/// CPU time spent per stage over a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct StageCost {
    /// Profile derivation.
    pub features: Duration,
    /// ANN search over all shards and the merge.
    pub ann: Duration,
    /// Input assembly and MLP.
    pub rank: Duration,
    /// Final top-k.
    pub topk: Duration,
}

impl Kernel {
    /// Loads the catalogue and builds (or loads the snapshots of) the index shards.
    pub fn load(config: &Config, threads: usize) -> anyhow::Result<Self> {
        let dir = &config.node.data_dir;
        let catalogue = Arc::new(Catalogue::load(dir)?);
        let shards = (0..config.index.shards)
            .map(|s| {
                open::load_or_build(
                    &dir.join("index"),
                    &catalogue,
                    (s, config.index.shards),
                    &config.index,
                    (threads, config.index_build_threads()),
                    &|_, _| {},
                )
                .map(|(i, _)| i)
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            source: ProfileSource::new(&catalogue),
            model: Arc::new(Model::builtin("ranker", &catalogue)?),
            items: Items::new(catalogue),
            shards,
            per_shard_k: config.per_shard_k(),
            candidates: config.index.candidates,
        })
    }

    /// The top-`k` (id, score) for `user_id`, adding each stage's time to `cost`.
    pub fn recommend(
        &self,
        user_id: &str,
        k: usize,
        cost: &mut StageCost,
    ) -> anyhow::Result<Vec<(u64, f32)>> {
        let t = Instant::now();
        let profile = self.source.profile(user_id);
        let t1 = Instant::now();
        let lists = self
            .shards
            .iter()
            .map(|s| s.search(&profile.emb, self.per_shard_k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let ids: Vec<u64> = merge(lists, self.candidates)
            .into_iter()
            .map(|c| c.id)
            .collect();
        let t2 = Instant::now();
        let scores = self.model.score_batch(
            &self.items,
            &[ScoreInput {
                profile: &profile,
                candidates: &ids,
            }],
        )?;
        let t3 = Instant::now();
        let top = top_k(&ids, &scores[0], k);
        let t4 = Instant::now();
        cost.features += t1 - t;
        cost.ann += t2 - t1;
        cost.rank += t3 - t2;
        cost.topk += t4 - t3;
        Ok(top)
    }
}
