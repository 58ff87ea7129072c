//! The background rebuild of an index shard. usearch's `remove` leaves a tombstone in the
//! HNSW graph: past many deletes, searches walk dead nodes and recall decays (qdrant#1045
//! and others report the same of HNSW generally). Once the tombstones reach a quarter of
//! the live items (and at least [`MIN_TOMBSTONES`]), a thread of its own — not a serving
//! thread — builds a fresh graph from the live items (the catalogue's rows of the shard
//! and the item writes since), then swaps it in under the exclusive lock in one move.
//!
//! The build runs without the shard's writer lock (item writes go on into the old
//! graph). Writers make a change live in the overlay before they apply it to the shard,
//! so at the swap — under the writer lock, briefly — every overlay entry of the shard
//! that changed since the build's snapshot is applied to the new graph, and nothing is
//! lost; a change still on its way is applied to the new graph after the swap.

use super::{add_to, grow, options, ShardIndex};
use crate::items::ItemRow;
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
        /// Clears the flag however the rebuild ends (a panic too).
        struct Done(Arc<ShardIndex>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.rebuilding.store(false, Ordering::Release);
            }
        }
        let done = Done(Arc::clone(self));
        let spawned = std::thread::Builder::new()
            .name(format!("rebuild-{}", self.shard))
            .spawn(move || {
                let me = &done.0;
                if let Err(e) = me.rebuild() {
                    // not again at once: only after as many deletes again
                    me.removed.store(0, Ordering::Relaxed);
                    tracing::error!(shard = me.shard, error = %format!("{e:#}"), "index rebuild failed; the old graph keeps serving");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "no thread for an index rebuild");
        }
    }

    /// Builds a graph of the live items and swaps it in. Blocking, seconds for a large
    /// shard: never call it on a serving thread.
    pub fn rebuild(&self) -> anyhow::Result<()> {
        let Some(items) = self.items.get() else {
            anyhow::bail!("no live items attached");
        };
        let started = Instant::now();
        let (base, before) = items.shard_snapshot(self.shard, self.shards);
        let mine = |id: u64| id % self.shards as u64 == self.shard as u64;
        let rows: Vec<usize> = (0..base.len())
            .filter(|&r| mine(base.id(r)) && !before.contains_key(&base.id(r)))
            .collect();
        let fresh = Index::new(&options(&self.cfg, self.dim))?;
        let live = rows.len() + before.values().filter(|r| r.is_some()).count();
        fresh.reserve_capacity_and_threads(live + live / 2 + 1024, self.threads)?;
        for &r in &rows {
            add_to(&fresh, self.scalar, base.id(r), base.item(r))?;
        }
        for (id, row) in &before {
            if let Some(row) = row {
                add_to(&fresh, self.scalar, *id, &row.emb)?;
            }
        }
        fresh.change_expansion_search(self.cfg.expansion_search);
        // the swap: what changed meanwhile, onto the new graph, then in
        let _one = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (_, now) = items.shard_snapshot(self.shard, self.shards);
        let same = |a: &Option<Arc<ItemRow>>, b: &Option<Arc<ItemRow>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let mut caught_up = 0;
        for (id, row) in &now {
            if before.get(id).is_some_and(|b| same(b, row)) {
                continue;
            }
            caught_up += 1;
            if fresh.contains(*id) {
                fresh.remove(*id)?;
            }
            if let Some(row) = row {
                if fresh.size() + 1 > fresh.capacity() {
                    grow(&fresh, self.threads)?;
                }
                add_to(&fresh, self.scalar, *id, &row.emb)?;
            }
        }
        let removed = self.removed.swap(0, Ordering::Relaxed);
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        tracing::info!(
            shard = self.shard,
            items = live,
            tombstones = removed,
            caught_up,
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
