//! The non-serving subcommands: `gen-data` and `bench-kernel`.

use anyhow::Context;
use recd_actors::candidates::index::{brute_force, merge};
use recd_actors::data::Schema;
use recd_actors::features::profile::SplitMix64;
use recd_actors::kernel::{Kernel, StageCost};
use recd_runtime::config::Config;
use serde::Serialize;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes a synthetic catalogue of `items` items of `schema` to `out`, printing progress.
pub fn gen_data(out: &Path, items: usize, seed: u64, schema: Schema) -> anyhow::Result<()> {
    let started = Instant::now();
    recd_actors::datagen::generate_with(out, items, seed, schema, |done| {
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
    /// Items asked of each shard.
    pub per_shard_k: usize,
    /// Requests run.
    pub requests: usize,
    /// Threads that ran them at once.
    pub threads: usize,
    /// Requests per second of all threads together (the machine's kernel throughput).
    pub requests_per_sec: f64,
    /// Requests per second per busy thread.
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

/// Runs the in-process kernel over uniform random users: `threads` threads (0 = one
/// per core) share `requests`; per-core figures are the mean over threads.
pub fn bench_kernel(
    config: &Config,
    requests: usize,
    recall_queries: usize,
    threads: usize,
    seed: u64,
) -> anyhow::Result<KernelReport> {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    };
    let kernel = Kernel::load(config, threads)?;
    let per_thread = requests.div_ceil(threads);
    // every thread warms up, then all start timing together: the wall clock covers only
    // the timed requests
    let start = std::sync::Barrier::new(threads);
    let run = |t: usize| -> anyhow::Result<(StageCost, Duration)> {
        let mut rng = SplitMix64::new(seed.wrapping_add(t as u64));
        let mut user = || format!("u{}", rng.next_u64() % 10_000_000);
        for _ in 0..per_thread.min(200) {
            kernel.recommend(&user(), 10, &mut StageCost::default())?; // warm-up
        }
        start.wait();
        let mut cost = StageCost::default();
        let started = Instant::now();
        for _ in 0..per_thread {
            kernel.recommend(&user(), 10, &mut cost)?;
        }
        Ok((cost, started.elapsed()))
    };
    let results: Vec<(StageCost, Duration)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|t| s.spawn(move || run(t))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("kernel thread panicked"))?
            })
            .collect::<anyhow::Result<_>>()
    })?;
    let wall = results.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let requests = per_thread * threads;
    let mut cost = StageCost::default();
    let mut busy = Duration::ZERO;
    for (c, d) in &results {
        cost.features += c.features;
        cost.ann += c.ann;
        cost.rank += c.rank;
        cost.topk += c.topk;
        busy += *d;
    }
    let mut rng = SplitMix64::new(seed ^ 0x5eed);
    let mut user = || format!("u{}", rng.next_u64() % 10_000_000);
    let us = |d: Duration| d.as_secs_f64() * 1e6 / requests as f64;
    let mut hit = 0;
    let k = kernel.candidates;
    for _ in 0..recall_queries {
        let profile = kernel.source.profile(&user());
        let truth = brute_force(kernel.items.base(), &profile.emb, k);
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
        items: kernel.items.base().len(),
        shards: kernel.shards.len(),
        expansion_search: config.index.expansion_search,
        per_shard_k: kernel.per_shard_k,
        requests,
        threads,
        requests_per_sec: requests as f64 / wall.as_secs_f64(),
        requests_per_sec_per_core: requests as f64 / busy.as_secs_f64(),
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

/// Status code of `GET url` (plain `http://host:port/path`, HTTP/1.0, one connection),
/// within `timeout` for connecting, writing and reading each.
pub fn probe(url: &str, timeout: std::time::Duration) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .context("probe URL must start with http://")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))?;
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /{path} HTTP/1.0\r\nHost: {authority}\r\n\r\n")?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    let line = String::from_utf8_lossy(&head[..n]);
    line.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP answer: {line:?}"))
}
