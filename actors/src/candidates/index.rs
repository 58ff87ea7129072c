//! One shard of the item index over usearch, with snapshot save/load, live item
//! changes, a background rebuild once deletes pile up (`rebuild.rs`), and the merge of
//! per-shard results.

use super::ann::AnnIndex;
use crate::data::Catalogue;
use crate::items::{ItemRow, Items};

mod rebuild;
use crate::types::Candidate;
use anyhow::{ensure, Context};
use recd_runtime::config::{IndexConfig, MetricConfig, ScalarKindConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock, RwLockReadGuard};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Scale of recd's own f32 → i8 quantisation (usearch's truncates; see USEARCH-NOTES).
const I8_SCALE: f32 = 127.0 / 0.75;

/// One index shard.
pub struct ShardIndex {
    /// Searches and adds hold it shared; growing the capacity and swapping in a rebuilt
    /// graph hold it alone (usearch must not reallocate under a search).
    index: RwLock<Index>,
    cfg: IndexConfig,
    scalar: ScalarKindConfig,
    shard: usize,
    shards: usize,
    /// Dimensions of every vector (the catalogue's schema).
    dim: usize,
    /// Thread slots reserved (searchers and the writer).
    threads: usize,
    /// One writer at a time: parallel adds can leave nodes unreachable (USearch#735).
    writer: Mutex<()>,
    /// Items removed since the graph was built (tombstones in it).
    removed: AtomicUsize,
    /// Set while a rebuild runs.
    rebuilding: AtomicBool,
    /// The live items a rebuild reads (attached once they are open).
    items: OnceLock<Arc<Items>>,
}

impl ShardIndex {
    /// Loads the shard's snapshot from `dir` if one matches the catalogue and the
    /// parameters, else builds it and saves a snapshot. Returns the index and whether it
    /// was loaded. `threads`: how many threads may search at once, and how many build
    /// (one: the same graph every time).
    pub fn load_or_build(
        dir: &Path,
        cat: &Catalogue,
        shard: usize,
        shards: usize,
        cfg: &IndexConfig,
        threads: (usize, usize),
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<(Self, bool)> {
        let path = snapshot_path(dir, cat, shard, shards, cfg);
        let options = options(cfg, cat.schema.dim);
        if path.is_file() {
            match Self::load(&path, &options, cfg, (shard, shards), threads.0) {
                Ok(me) if me.len() == shard_rows(cat, shard, shards).len() => {
                    return Ok((me, true))
                }
                Ok(_) => {
                    tracing::warn!(path = %path.display(), "snapshot size mismatch, rebuilding")
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "snapshot unreadable, rebuilding")
                }
            }
        }
        let me = Self::build(cat, shard, shards, cfg, threads, progress)?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // a unique temporary name: nodes (or tests) sharing a data folder may build the
        // same shard at once; each rename is atomic and either snapshot is valid
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
        (me.guard())
            .save(path_str(&tmp)?)
            .context("saving index snapshot")?;
        std::fs::rename(&tmp, &path)?;
        Ok((me, false))
    }

    fn load(
        path: &Path,
        options: &IndexOptions,
        cfg: &IndexConfig,
        shard: (usize, usize),
        threads: usize,
    ) -> anyhow::Result<Self> {
        let index = Index::new(options).context("creating index")?;
        index.load(path_str(path)?).context("loading snapshot")?;
        ensure!(
            index.dimensions() == options.dimensions,
            "snapshot of {} dimensions, the catalogue has {}",
            index.dimensions(),
            options.dimensions
        );
        index
            .reserve_capacity_and_threads(index.size(), threads)
            .context("reserving threads")?;
        index.change_expansion_search(cfg.expansion_search);
        Ok(Self::over(index, cfg, shard, threads))
    }

    fn over(
        index: Index,
        cfg: &IndexConfig,
        (shard, shards): (usize, usize),
        threads: usize,
    ) -> Self {
        let dim = index.dimensions();
        Self {
            index: RwLock::new(index),
            cfg: cfg.clone(),
            scalar: cfg.scalar,
            shard,
            shards,
            dim,
            threads,
            writer: Mutex::new(()),
            removed: AtomicUsize::new(0),
            rebuilding: AtomicBool::new(false),
            items: OnceLock::new(),
        }
    }

    fn guard(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The live items a background rebuild reads; without them the shard never rebuilds.
    pub fn attach(&self, items: Arc<Items>) {
        let _ = self.items.set(items);
    }

    /// Applies item upserts (`Some`: remove then add) and deletes (`None`), one writer
    /// at a time, growing the capacity by half when full. Blocking (run it on the
    /// compute pool, never on an async worker).
    /// Past [`rebuild::due`] tombstones a background thread rebuilds the graph.
    pub fn apply(self: &Arc<Self>, changes: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()> {
        self.apply_changes(changes)?;
        self.rebuild_when_due();
        Ok(())
    }

    fn apply_changes(&self, changes: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()> {
        let _one = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for (id, row) in changes {
            let full = {
                let index = self.guard();
                row.is_some() && index.size() + 1 > index.capacity()
            };
            if full {
                let index = self.index.write().unwrap_or_else(|p| p.into_inner());
                (grow(&index, self.threads))
                    .map_err(|e| anyhow::anyhow!("growing shard {}: {e}", self.shard))?;
            }
            let index = self.guard();
            if index.contains(*id) {
                (index.remove(*id)).map_err(|e| anyhow::anyhow!("removing item {id}: {e}"))?;
                self.removed.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(row) = row {
                add_to(&index, self.scalar, *id, &row.emb)?;
            }
        }
        Ok(())
    }

    /// Builds the shard from the catalogue: `threads.1` threads add the items (one:
    /// in id order, the same graph every time), `threads.0` may search it afterwards.
    pub fn build(
        cat: &Catalogue,
        shard: usize,
        shards: usize,
        cfg: &IndexConfig,
        (search_threads, threads): (usize, usize),
        progress: &(dyn Fn(usize, usize) + Sync),
    ) -> anyhow::Result<Self> {
        let rows = shard_rows(cat, shard, shards);
        let n = rows.len();
        let index = Index::new(&options(cfg, cat.schema.dim)).context("creating index")?;
        let threads = threads.max(1);
        index
            .reserve_capacity_and_threads(n, threads.max(search_threads))
            .context("reserving index")?;
        let me = Self::over(index, cfg, (shard, shards), threads.max(search_threads));
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| -> anyhow::Result<()> {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (me, done, rows) = (&me, &done, &rows);
                    s.spawn(move || -> anyhow::Result<()> {
                        for local in (t..n).step_by(threads) {
                            let row = rows[local];
                            add_to(&me.guard(), me.scalar, cat.id(row), cat.item(row))?;
                            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                            if d % 20_000 == 0 || d == n {
                                progress(d, n);
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            for w in workers {
                w.join()
                    .map_err(|_| anyhow::anyhow!("index build thread panicked"))??;
            }
            Ok(())
        })?;
        me.guard().change_expansion_search(cfg.expansion_search);
        Ok(me)
    }

    /// The `k` nearest items of this shard to `query`.
    pub fn search(&self, query: &[f32], k: usize) -> anyhow::Result<Vec<Candidate>> {
        ensure!(
            query.len() == self.dim,
            "query has {} dims, expected {}",
            query.len(),
            self.dim
        );
        let index = self.guard();
        let m = match self.scalar {
            ScalarKindConfig::I8 => index.search(&quantise_i8(query), k),
            _ => index.search(query, k),
        }
        .map_err(|e| anyhow::anyhow!("searching shard {}: {e}", self.shard))?;
        Ok(m.keys
            .into_iter()
            .zip(m.distances)
            .map(|(id, distance)| Candidate { id, distance })
            .collect())
    }

    /// Dimensions of its vectors (a query must have them).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Items in this shard.
    pub fn len(&self) -> usize {
        self.guard().size()
    }

    /// True when the shard holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AnnIndex for ShardIndex {
    /// usearch walks at least as wide as the results it is asked for (USEARCH-NOTES): a
    /// breadth above `k` is asking for `ef` results and keeping the best `k`.
    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
    ) -> anyhow::Result<Vec<Vec<Candidate>>> {
        (queries.chunks(self.dim))
            .map(|q| {
                let mut found = self.search(q, k.max(ef))?;
                found.truncate(k);
                Ok(found)
            })
            .collect()
    }

    fn apply_items(self: Arc<Self>, changes: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()> {
        ShardIndex::apply(&self, changes)
    }

    fn attach(&self, items: Arc<Items>) {
        ShardIndex::attach(self, items)
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        ShardIndex::len(self)
    }

    fn backend(&self) -> &'static str {
        "hnsw"
    }
}

/// Merges per-shard lists into the `k` closest (distance ascending, ties by smaller id).
pub fn merge(lists: impl IntoIterator<Item = Vec<Candidate>>, k: usize) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = lists.into_iter().flatten().collect();
    let by = |a: &Candidate, b: &Candidate| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id));
    if all.len() > k {
        all.select_nth_unstable_by(k, by);
        all.truncate(k);
    }
    all.sort_unstable_by(by);
    all
}

/// Exact top-`k` item ids by inner product over the whole catalogue (reference for
/// recall measurements; ties by smaller id).
pub fn brute_force(cat: &Catalogue, query: &[f32], k: usize) -> Vec<u64> {
    let mut scored: Vec<(f32, u64)> = (0..cat.len())
        .map(|i| (crate::data::dot(query, cat.item(i)), cat.id(i)))
        .collect();
    let by = |a: &(f32, u64), b: &(f32, u64)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    let k = k.min(scored.len());
    if k < scored.len() {
        scored.select_nth_unstable_by(k, by);
        scored.truncate(k);
    }
    scored.sort_unstable_by(by);
    scored.into_iter().map(|(_, id)| id).collect()
}

/// The catalogue rows of shard `shard`: items whose id is `shard` modulo `shards` (the
/// rule item writes follow too).
fn shard_rows(cat: &Catalogue, shard: usize, shards: usize) -> Vec<usize> {
    (0..cat.len())
        .filter(|&r| cat.id(r) % shards as u64 == shard as u64)
        .collect()
}

fn options(cfg: &IndexConfig, dim: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: match cfg.metric {
            MetricConfig::Ip => MetricKind::IP,
            MetricConfig::Cos => MetricKind::Cos,
        },
        quantization: match cfg.scalar {
            ScalarKindConfig::F32 => ScalarKind::F32,
            ScalarKindConfig::F16 => ScalarKind::F16,
            ScalarKindConfig::I8 => ScalarKind::I8,
        },
        connectivity: cfg.connectivity,
        expansion_add: cfg.expansion_add,
        expansion_search: cfg.expansion_search,
        multi: false,
    }
}

fn snapshot_path(
    dir: &Path,
    cat: &Catalogue,
    shard: usize,
    shards: usize,
    cfg: &IndexConfig,
) -> PathBuf {
    let metric = match cfg.metric {
        MetricConfig::Ip => "ip",
        MetricConfig::Cos => "cos",
    };
    let scalar = format!("{:?}", cfg.scalar).to_lowercase();
    // a single-threaded build is reproducible (the same graph on every replica): it is
    // never confused with, nor replaced by, a parallel one
    let build = if cfg.build_threads == 1 { "-b1" } else { "" };
    dir.join(format!(
        "shard{shard}of{shards}-{metric}-{scalar}-M{}-efc{}{build}-{}.usearch",
        cfg.connectivity,
        cfg.expansion_add,
        cat.fingerprint()
    ))
}

/// Grows the capacity by half (and 1 024) for the adds to come.
fn grow(index: &Index, threads: usize) -> anyhow::Result<()> {
    let cap = index.capacity() + index.capacity() / 2 + 1024;
    Ok(index.reserve_capacity_and_threads(cap, threads)?)
}

/// Adds `v` under `key`, quantised as the index stores it.
fn add_to(index: &Index, scalar: ScalarKindConfig, key: u64, v: &[f32]) -> anyhow::Result<()> {
    match scalar {
        ScalarKindConfig::I8 => index.add(key, &quantise_i8(v)),
        _ => index.add(key, v),
    }
    .map_err(|e| anyhow::anyhow!("adding item {key}: {e}"))
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("non-utf-8 path {}", p.display()))
}

fn quantise_i8(v: &[f32]) -> Vec<i8> {
    v.iter()
        .map(|x| (x * I8_SCALE).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

#[cfg(test)]
mod tests;
