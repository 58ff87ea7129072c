//! One shard of the item index over usearch, with snapshot save/load, and the merge of
//! per-shard results.

use crate::data::Catalogue;
use crate::items::ItemRow;
use crate::types::Candidate;
use anyhow::{ensure, Context};
use recd_runtime::config::{IndexConfig, MetricConfig, ScalarKindConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// Scale of recd's own f32 → i8 quantisation (usearch's truncates; see USEARCH-NOTES).
const I8_SCALE: f32 = 127.0 / 0.75;

/// One index shard.
pub struct ShardIndex {
    index: Index,
    scalar: ScalarKindConfig,
    exact: bool,
    shard: usize,
    /// Dimensions of every vector (the catalogue's schema).
    dim: usize,
    /// Thread slots reserved (searchers and the writer).
    threads: usize,
    /// Searches hold it shared; growing the capacity holds it alone (usearch must not
    /// reallocate under a search).
    grow: RwLock<()>,
    /// One writer at a time: parallel adds can leave nodes unreachable (USearch#735).
    writer: Mutex<()>,
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
            match Self::load(&path, &options, cfg, shard, threads.0) {
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
        me.index
            .save(path_str(&tmp)?)
            .context("saving index snapshot")?;
        std::fs::rename(&tmp, &path)?;
        Ok((me, false))
    }

    fn load(
        path: &Path,
        options: &IndexOptions,
        cfg: &IndexConfig,
        shard: usize,
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

    fn over(index: Index, cfg: &IndexConfig, shard: usize, threads: usize) -> Self {
        let dim = index.dimensions();
        Self {
            index,
            scalar: cfg.scalar,
            exact: cfg.exact,
            shard,
            dim,
            threads,
            grow: RwLock::new(()),
            writer: Mutex::new(()),
        }
    }

    /// Applies item upserts (`Some`: remove then add) and deletes (`None`), one writer
    /// at a time, growing the capacity by half when full. Blocking (run it on the
    /// compute pool, never on an async worker).
    pub fn apply(&self, changes: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()> {
        let _one = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for (id, row) in changes {
            if row.is_some() && self.index.size() + 1 > self.index.capacity() {
                let _alone = self.grow.write().unwrap_or_else(|p| p.into_inner());
                let cap = self.index.capacity() + self.index.capacity() / 2 + 1024;
                (self.index.reserve_capacity_and_threads(cap, self.threads))
                    .map_err(|e| anyhow::anyhow!("growing shard {}: {e}", self.shard))?;
            }
            let _shared = self.grow.read().unwrap_or_else(|p| p.into_inner());
            if self.index.contains(*id) {
                (self.index.remove(*id)).map_err(|e| anyhow::anyhow!("removing item {id}: {e}"))?;
            }
            if let Some(row) = row {
                self.add(*id, &row.emb)?;
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
        let me = Self::over(index, cfg, shard, threads.max(search_threads));
        let done = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| -> anyhow::Result<()> {
            let workers: Vec<_> = (0..threads)
                .map(|t| {
                    let (me, done, rows) = (&me, &done, &rows);
                    s.spawn(move || -> anyhow::Result<()> {
                        for local in (t..n).step_by(threads) {
                            let row = rows[local];
                            me.add(cat.id(row), cat.item(row))?;
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
        me.index.change_expansion_search(cfg.expansion_search);
        Ok(me)
    }

    fn add(&self, key: u64, v: &[f32]) -> anyhow::Result<()> {
        match self.scalar {
            ScalarKindConfig::I8 => self.index.add(key, &quantise_i8(v)),
            _ => self.index.add(key, v),
        }
        .map_err(|e| anyhow::anyhow!("adding item {key}: {e}"))
    }

    /// The `k` nearest items of this shard to `query`.
    pub fn search(&self, query: &[f32], k: usize) -> anyhow::Result<Vec<Candidate>> {
        ensure!(
            query.len() == self.dim,
            "query has {} dims, expected {}",
            query.len(),
            self.dim
        );
        let _searching = self.grow.read().unwrap_or_else(|p| p.into_inner());
        let m = match (self.scalar, self.exact) {
            (ScalarKindConfig::I8, false) => self.index.search(&quantise_i8(query), k),
            (ScalarKindConfig::I8, true) => self.index.exact_search(&quantise_i8(query), k),
            (_, false) => self.index.search(query, k),
            (_, true) => self.index.exact_search(query, k),
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
        self.index.size()
    }

    /// True when the shard holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
