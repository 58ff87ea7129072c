//! Exact flat search: a shard's vectors in one row-major matrix, every query of a batch
//! scored against every item by one SGEMM per block of items (matrixmultiply), the top
//! `k` by inner product kept. Recall 1.0 by construction — the ground truth the HNSW
//! backend's recall is measured against — at a cost linear in the shard's items.

use super::ann::AnnIndex;
use crate::data::Catalogue;
use crate::items::{ItemRow, Items};
use crate::types::Candidate;
use anyhow::ensure;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Items scored per SGEMM (queries × BLOCK scores stay in cache).
const BLOCK: usize = 4096;

#[derive(Default)]
struct Rows {
    ids: Vec<u64>,
    vecs: Vec<f32>,
    at: HashMap<u64, usize>,
}

/// A shard's items for exact search.
pub struct FlatIndex {
    rows: RwLock<Rows>,
    dim: usize,
}

impl FlatIndex {
    /// The catalogue's items of shard `shard` of `shards` (ids `shard` modulo `shards`).
    pub fn build(cat: &Catalogue, shard: usize, shards: usize) -> anyhow::Result<Self> {
        ensure!(shards > 0 && shard < shards, "shard {shard} of {shards}");
        let dim = cat.schema.dim;
        let mut rows = Rows::default();
        for r in (0..cat.len()).filter(|&r| cat.id(r) % shards as u64 == shard as u64) {
            rows.at.insert(cat.id(r), rows.ids.len());
            rows.ids.push(cat.id(r));
            rows.vecs.extend_from_slice(cat.item(r));
        }
        Ok(Self {
            rows: RwLock::new(rows),
            dim,
        })
    }
}

impl AnnIndex for FlatIndex {
    fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        _ef: usize,
    ) -> anyhow::Result<Vec<Vec<Candidate>>> {
        ensure!(
            queries.len() % self.dim == 0,
            "{} floats are not {}-d queries",
            queries.len(),
            self.dim
        );
        let q = queries.len() / self.dim;
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner());
        let n = rows.ids.len();
        let mut best: Vec<Vec<(f32, u64)>> = (0..q).map(|_| Vec::with_capacity(4 * k)).collect();
        // per query: the k-th best score so far (below it nothing can enter the top k)
        let mut bar = vec![f32::NEG_INFINITY; q];
        let mut scores = vec![0f32; q * BLOCK.min(n.max(1))];
        for start in (0..n).step_by(BLOCK) {
            let m = BLOCK.min(n - start);
            let block = &rows.vecs[start * self.dim..(start + m) * self.dim];
            scores[..q * m].fill(0.0);
            ip_block(queries, q, block, m, self.dim, &mut scores[..q * m]);
            for (i, kept) in best.iter_mut().enumerate() {
                let row = &scores[i * m..(i + 1) * m];
                for (&s, &id) in row.iter().zip(&rows.ids[start..start + m]) {
                    // a tie with the bar may still win on a smaller id: kept
                    if s >= bar[i] {
                        kept.push((s, id));
                        if kept.len() > 4 * k.max(1) {
                            keep_best(kept, k);
                            bar[i] = kept.iter().map(|p| p.0).fold(f32::INFINITY, f32::min);
                        }
                    }
                }
            }
        }
        Ok(best
            .into_iter()
            .map(|mut kept| {
                kept.sort_unstable_by(by_score);
                kept.truncate(k);
                (kept.into_iter())
                    .map(|(s, id)| Candidate {
                        id,
                        distance: 1.0 - s,
                    })
                    .collect()
            })
            .collect())
    }

    fn apply_items(self: Arc<Self>, changes: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()> {
        let mut rows = self.rows.write().unwrap_or_else(|p| p.into_inner());
        for (id, row) in changes {
            match (rows.at.get(id).copied(), row) {
                (Some(at), Some(r)) => {
                    ensure!(r.emb.len() == self.dim, "item {id} is not {}-d", self.dim);
                    rows.vecs[at * self.dim..(at + 1) * self.dim].copy_from_slice(&r.emb);
                }
                (None, Some(r)) => {
                    ensure!(r.emb.len() == self.dim, "item {id} is not {}-d", self.dim);
                    let at = rows.ids.len();
                    rows.at.insert(*id, at);
                    rows.ids.push(*id);
                    rows.vecs.extend_from_slice(&r.emb);
                }
                (Some(at), None) => {
                    // the last row moves into the hole
                    let last = rows.ids.len() - 1;
                    let moved = rows.ids[last];
                    rows.ids.swap_remove(at);
                    let (d, vecs) = (self.dim, &mut rows.vecs);
                    vecs.copy_within(last * d..(last + 1) * d, at * d);
                    vecs.truncate(last * d);
                    rows.at.remove(id);
                    if moved != *id {
                        rows.at.insert(moved, at);
                    }
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    fn attach(&self, _items: Arc<Items>) {}

    fn dim(&self) -> usize {
        self.dim
    }

    fn len(&self) -> usize {
        self.rows
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .ids
            .len()
    }

    fn backend(&self) -> &'static str {
        "flat"
    }
}

fn by_score(a: &(f32, u64), b: &(f32, u64)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// Keeps the best `k` (unordered).
fn keep_best(kept: &mut Vec<(f32, u64)>, k: usize) {
    if k == 0 {
        kept.clear();
    } else if k < kept.len() {
        kept.select_nth_unstable_by(k - 1, by_score);
        kept.truncate(k);
    }
}

/// scores (q × m) = queries (q × dim) · blockᵀ (dim × m), the block row-major m × dim.
#[allow(unsafe_code)]
fn ip_block(queries: &[f32], q: usize, block: &[f32], m: usize, dim: usize, scores: &mut [f32]) {
    assert!(queries.len() >= q * dim && block.len() >= m * dim && scores.len() >= q * m);
    // SAFETY: the assert keeps every strided access in bounds: the block is read as its
    // transpose (row stride 1, column stride dim); `scores` is exclusively borrowed.
    unsafe {
        matrixmultiply::sgemm(
            q,
            dim,
            m,
            1.0,
            queries.as_ptr(),
            dim as isize,
            1,
            block.as_ptr(),
            1,
            dim as isize,
            0.0,
            scores.as_mut_ptr(),
            m as isize,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidates::index::{brute_force, merge};
    use crate::test_data::catalogue;

    fn shards(cat: &Catalogue, n: usize) -> Vec<Arc<dyn AnnIndex>> {
        (0..n)
            .map(|s| Arc::new(FlatIndex::build(cat, s, n).unwrap()) as Arc<dyn AnnIndex>)
            .collect()
    }

    fn search(shards: &[Arc<dyn AnnIndex>], q: &[f32], k: usize) -> Vec<u64> {
        let lists = shards.iter().map(|s| s.search(q, k).unwrap());
        merge(lists, k).into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn flat_search_is_exact_and_batches_agree() {
        let (_d, cat) = catalogue(3_000);
        let flat = shards(&cat, 3);
        assert_eq!(flat.iter().map(|s| s.len()).sum::<usize>(), 3_000);
        let mut hits = 0;
        for r in (0..3_000).step_by(150) {
            let q = cat.item(r);
            let got = search(&flat, q, 100);
            assert_eq!(got, brute_force(&cat, q, 100), "query {r}");
            hits += got.len();
        }
        assert_eq!(hits, 20 * 100, "recall 1.0 on 20 queries");
        // a batch of queries answers what each alone does
        let queries: Vec<f32> = (0..5).flat_map(|r| cat.item(r * 7).to_vec()).collect();
        let batch = flat[1].search_batch(&queries, 30, 30).unwrap();
        for (i, list) in batch.iter().enumerate() {
            assert_eq!(list, &flat[1].search(cat.item(i * 7), 30).unwrap());
        }
    }

    #[test]
    fn writes_change_what_flat_search_answers() {
        let (_d, cat) = catalogue(500);
        let flat = shards(&cat, 1).pop().unwrap();
        let q = cat.item(3).to_vec();
        assert_eq!(flat.search(&q, 1).unwrap()[0].id, 3);
        let row = |v: &[f32]| {
            Some(Arc::new(
                ItemRow::checked(v.to_vec(), vec![0.0; 16], cat.schema).unwrap(),
            ))
        };
        // a new item with item 3's vector ties it; deleting 3 leaves the new one first
        Arc::clone(&flat)
            .apply_items(&[(9_000, row(&q)), (3, None), (499, None)])
            .unwrap();
        let top = flat.search(&q, 3).unwrap();
        assert_eq!(top[0].id, 9_000);
        assert!(top.iter().all(|c| c.id != 3));
        assert_eq!(flat.len(), 499);
        // an upsert moves an item: 7 now answers for item 3's vector too
        Arc::clone(&flat).apply_items(&[(7, row(&q))]).unwrap();
        let ids: Vec<u64> = flat.search(&q, 2).unwrap().iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![7, 9_000]);
        for r in 0..498 {
            let all = flat.search(cat.item(r), 500).unwrap();
            assert!(all.iter().all(|c| c.id != 3 && c.id != 499));
        }
    }
}
