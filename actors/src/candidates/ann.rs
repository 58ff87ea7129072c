//! The ANN backend seam: what an index shard needs of its index, whatever answers it —
//! usearch HNSW (`index::ShardIndex`) or exact flat search over a batched GEMM
//! (`flat::FlatIndex`, also the recall ground truth). `index.backend` picks
//! one per node's indexes (`open.rs`); the shard actor, the item appliers and the
//! kernel see only `Arc<dyn AnnIndex>`.

use crate::items::{ItemRow, Items};
use crate::types::Candidate;
use std::sync::Arc;

/// A shard's index, shared by its actor, the item appliers and the rebuild.
pub type SharedIndex = Arc<dyn AnnIndex>;

/// One shard's index of item vectors.
pub trait AnnIndex: Send + Sync {
    /// The `k` nearest items of each query (`dim` floats each, concatenated), best
    /// first, walking at least `ef` wide where the backend approximates.
    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
    ) -> anyhow::Result<Vec<Vec<Candidate>>>;

    /// The `k` nearest items of one query, walking `k` wide.
    fn search(&self, query: &[f32], k: usize) -> anyhow::Result<Vec<Candidate>> {
        let mut one = self.search_batch(query, k, k)?;
        anyhow::ensure!(one.len() == 1, "{} floats are not one query", query.len());
        Ok(one.pop().unwrap_or_default())
    }

    /// Applies item upserts (`Some`) and deletes (`None`) in order. Blocking: run it on
    /// the compute pool. A backend may start background work (an HNSW rebuild).
    fn apply_items(self: Arc<Self>, changes: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()>;

    /// The live items a background rebuild reads.
    fn attach(&self, items: Arc<Items>);

    /// Dimensions of its vectors.
    fn dim(&self) -> usize;

    /// Items it holds.
    fn len(&self) -> usize;

    /// True when it holds none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The backend's name (`hnsw`, `flat`).
    fn backend(&self) -> &'static str;
}
