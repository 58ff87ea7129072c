//! Opens a shard's index of the configured backend (`index.backend`).

use super::ann::SharedIndex;
use super::flat::FlatIndex;
use super::index::ShardIndex;
use crate::data::Catalogue;
use recd_runtime::config::{IndexBackend, IndexConfig};
use std::path::Path;
use std::sync::Arc;

/// Shard `shard` of `shards` of the configured backend: HNSW from its snapshot in `dir`
/// (or built and saved), flat from the catalogue. Returns whether a snapshot was loaded.
pub fn load_or_build(
    dir: &Path,
    cat: &Catalogue,
    (shard, shards): (usize, usize),
    cfg: &IndexConfig,
    threads: (usize, usize),
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<(SharedIndex, bool)> {
    Ok(match cfg.backend {
        IndexBackend::Hnsw => {
            let (idx, loaded) =
                ShardIndex::load_or_build(dir, cat, shard, shards, cfg, threads, progress)?;
            (Arc::new(idx), loaded)
        }
        IndexBackend::Flat => (Arc::new(FlatIndex::build(cat, shard, shards)?), false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candidates::index::merge;
    use crate::test_data::catalogue;

    fn shards(cat: &Catalogue, n: usize, backend: IndexBackend) -> Vec<SharedIndex> {
        let cfg = IndexConfig {
            backend,
            shards: n,
            ..IndexConfig::default()
        };
        let snap = tempfile::tempdir().unwrap();
        (0..n)
            .map(|s| {
                load_or_build(snap.path(), cat, (s, n), &cfg, (2, 1), &|_, _| {})
                    .unwrap()
                    .0
            })
            .collect()
    }

    fn search(shards: &[SharedIndex], q: &[f32], k: usize) -> Vec<u64> {
        let lists = shards.iter().map(|s| s.search(q, k).unwrap());
        merge(lists, k).into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn hnsw_recall_against_the_flat_ground_truth() {
        let (_d, cat) = catalogue(4_000);
        let (flat, hnsw) = (
            shards(&cat, 2, IndexBackend::Flat),
            shards(&cat, 2, IndexBackend::Hnsw),
        );
        assert_eq!((flat[0].backend(), hnsw[0].backend()), ("flat", "hnsw"));
        let (mut hit, mut total) = (0, 0);
        for r in (0..4_000).step_by(200) {
            let truth = search(&flat, cat.item(r), 50);
            let got = search(&hnsw, cat.item(r), 50);
            hit += got.iter().filter(|id| truth.contains(id)).count();
            total += truth.len();
        }
        let recall = hit as f64 / total as f64;
        assert!(recall >= 0.9, "HNSW recall@50 {recall}");
    }
}
