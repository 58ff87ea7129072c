//! The non-serving subcommands: `gen-data` and `bench-kernel`.

use recd_actors::candidates::index::{brute_force, merge};
use recd_actors::features::profile::SplitMix64;
use recd_actors::kernel::{Kernel, StageCost};
use recd_runtime::config::Config;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a synthetic catalogue of `items` items to `out`, printing progress.
pub fn gen_data(out: &Path, items: usize, seed: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    recd_actors::datagen::generate(out, items, seed, |done| {
        eprintln!("gen-data: {done}/{items} items");
    })?;
    eprintln!(
        "gen-data: wrote {} in {:.1} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What `bench-kernel` measures.
#[derive(Debug, Serialize)]
pub struct KernelReport {
    /// Items in the catalogue.
    pub items: usize,
    /// Index shards.
    pub shards: usize,
    /// HNSW ef at search.
    pub expansion_search: usize,
    /// Requests run (one thread).
    pub requests: usize,
    /// Requests per second on one core.
    pub requests_per_sec_per_core: f64,
    /// Mean microseconds per request, per stage.
    pub us_per_request: StageMicros,
    /// Recall@`candidates` of the sharded ANN against brute force.
    pub recall_at_candidates: f64,
    /// Queries the recall was measured on.
    pub recall_queries: usize,
}

/// Mean microseconds per stage.
#[derive(Debug, Serialize)]
pub struct StageMicros {
    /// Profile derivation.
    pub features: f64,
    /// ANN over all shards + merge.
    pub ann: f64,
    /// MLP over the candidates.
    pub rank: f64,
    /// Final top-k.
    pub topk: f64,
    /// Sum of the stages.
    pub total: f64,
}

/// Runs the in-process kernel on one thread over uniform random users.
pub fn bench_kernel(
    config: &Config,
    requests: usize,
    recall_queries: usize,
    seed: u64,
) -> anyhow::Result<KernelReport> {
    let kernel = Kernel::load(config, 1)?;
    let mut rng = SplitMix64::new(seed);
    let mut user = || format!("u{}", rng.next_u64() % 10_000_000);
    for _ in 0..requests.min(200) {
        kernel.recommend(&user(), 10, &mut StageCost::default())?; // warm-up
    }
    let mut cost = StageCost::default();
    let started = Instant::now();
    for _ in 0..requests {
        kernel.recommend(&user(), 10, &mut cost)?;
    }
    let wall = started.elapsed();
    let us = |d: Duration| d.as_secs_f64() * 1e6 / requests as f64;
    let mut hit = 0;
    let k = kernel.candidates;
    for _ in 0..recall_queries {
        let profile = kernel.source.profile(&user());
        let truth = brute_force(&kernel.catalogue, &profile.emb, k);
        let lists = kernel
            .shards
            .iter()
            .map(|s| s.search(&profile.emb, kernel.per_shard_k))
            .collect::<anyhow::Result<Vec<_>>>()?;
        hit += merge(lists, k)
            .iter()
            .filter(|c| truth.contains(&c.id))
            .count();
    }
    Ok(KernelReport {
        items: kernel.catalogue.len(),
        shards: kernel.shards.len(),
        expansion_search: config.index.expansion_search,
        requests,
        requests_per_sec_per_core: requests as f64 / wall.as_secs_f64(),
        us_per_request: StageMicros {
            features: us(cost.features),
            ann: us(cost.ann),
            rank: us(cost.rank),
            topk: us(cost.topk),
            total: us(cost.features + cost.ann + cost.rank + cost.topk),
        },
        recall_at_candidates: hit as f64 / (recall_queries * k).max(1) as f64,
        recall_queries,
    })
}
