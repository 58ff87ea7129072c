//! The background rebuild of an index shard. usearch's `remove` leaves a tombstone in the
//! HNSW graph: past many deletes, searches walk dead nodes and recall decays (qdrant#1045
//! and others report the same of HNSW generally). Once the tombstones reach a quarter of
//! the live items (and at least [`MIN_TOMBSTONES`]), a thread of its own — not a serving
//! thread — builds a fresh graph from the live items (the catalogue's rows of the shard
//! and the item writes since), then swaps it in under the exclusive lock in one move.
//!
//! The shard's writer lock is held through the build, so no item change is lost: a
//! change made live before the build began is in the items it reads; one that arrives
//! during it waits and is applied to the new graph.

use super::{add_to, options, ShardIndex};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use usearch::Index;

/// Fewest tombstones worth a rebuild.
pub(super) const MIN_TOMBSTONES: usize = 256;

/// Whether `removed` tombstones among `live` items call for a rebuild.
pub(super) fn due(removed: usize, live: usize) -> bool {
    removed >= MIN_TOMBSTONES && removed * 4 >= live
}

impl ShardIndex {
    /// Starts a rebuild on its own thread when one is due and none runs.
    pub(super) fn rebuild_when_due(self: &Arc<Self>) {
        if self.items.get().is_none() || !due(self.removed.load(Ordering::Relaxed), self.len()) {
            return;
        }
        if self.rebuilding.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name(format!("rebuild-{}", self.shard))
            .spawn(move || {
                if let Err(e) = me.rebuild() {
                    tracing::error!(shard = me.shard, error = %format!("{e:#}"), "index rebuild failed; the old graph keeps serving");
                }
                me.rebuilding.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.rebuilding.store(false, Ordering::Release);
        }
    }

    /// Builds a graph of the live items and swaps it in. Blocking, seconds for a large
    /// shard: never call it on a serving thread.
    pub fn rebuild(&self) -> anyhow::Result<()> {
        let Some(items) = self.items.get() else {
            anyhow::bail!("no live items attached");
        };
        let _one = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        let (base, changed) = items.shard_snapshot(self.shard, self.shards);
        let mine = |id: u64| id % self.shards as u64 == self.shard as u64;
        let rows: Vec<usize> = (0..base.len())
            .filter(|&r| mine(base.id(r)) && !changed.contains_key(&base.id(r)))
            .collect();
        let fresh = Index::new(&options(&self.cfg, self.dim))?;
        let live = rows.len() + changed.values().filter(|r| r.is_some()).count();
        fresh.reserve_capacity_and_threads(live + live / 2 + 1024, self.threads)?;
        for &r in &rows {
            add_to(&fresh, self.scalar, base.id(r), base.item(r))?;
        }
        for (id, row) in &changed {
            if let Some(row) = row {
                add_to(&fresh, self.scalar, *id, &row.emb)?;
            }
        }
        fresh.change_expansion_search(self.cfg.expansion_search);
        let removed = self.removed.swap(0, Ordering::Relaxed);
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        tracing::info!(
            shard = self.shard,
            items = live,
            tombstones = removed,
            ms = started.elapsed().as_millis() as u64,
            "index shard rebuilt"
        );
        Ok(())
    }

    /// Tombstones in the graph now.
    pub fn tombstones(&self) -> usize {
        self.removed.load(Ordering::Relaxed)
    }
}
