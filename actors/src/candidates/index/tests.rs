use super::*;
use crate::features::profile::ProfileSource;
use crate::test_data::catalogue;

fn cfg(shards: usize) -> IndexConfig {
    IndexConfig {
        shards,
        expansion_search: 200,
        ..IndexConfig::default()
    }
}

fn build_all(cat: &Catalogue, cfg: &IndexConfig, dir: &Path) -> (Vec<ShardIndex>, bool) {
    let mut loaded = true;
    let shards = (0..cfg.shards)
        .map(|s| {
            let (idx, l) =
                ShardIndex::load_or_build(dir, cat, s, cfg.shards, cfg, (2, 2), &|_, _| {})
                    .unwrap();
            loaded &= l;
            idx
        })
        .collect();
    (shards, loaded)
}

fn sharded_search(shards: &[ShardIndex], q: &[f32], k: usize, per_shard: usize) -> Vec<u64> {
    merge(shards.iter().map(|s| s.search(q, per_shard).unwrap()), k)
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[test]
fn sharded_recall_at_200_is_at_least_095() {
    let (_dir, cat) = catalogue(20_000);
    let snap = tempfile::tempdir().unwrap();
    let c = cfg(4);
    let (shards, loaded) = build_all(&cat, &c, snap.path());
    assert!(!loaded);
    assert_eq!(shards.iter().map(ShardIndex::len).sum::<usize>(), 20_000);
    let source = ProfileSource::new(&cat);
    let (mut hit, mut total) = (0, 0);
    for u in 0..40 {
        let p = source.profile(&format!("u{}", u * 7919));
        let truth = brute_force(&cat, &p.emb, 200);
        let got = sharded_search(&shards, &p.emb, 200, 100);
        assert_eq!(got.len(), 200);
        hit += got.iter().filter(|id| truth.contains(id)).count();
        total += 200;
    }
    let recall = hit as f64 / total as f64;
    assert!(recall >= 0.95, "recall@200 {recall}");
}

#[test]
fn snapshot_reload_answers_the_same() {
    let (_dir, cat) = catalogue(3_000);
    let snap = tempfile::tempdir().unwrap();
    let c = cfg(2);
    let (first, loaded) = build_all(&cat, &c, snap.path());
    assert!(!loaded);
    let (second, loaded) = build_all(&cat, &c, snap.path());
    assert!(loaded, "second start must load the snapshot");
    let q = cat.item(17).to_vec();
    assert_eq!(
        sharded_search(&first, &q, 50, 50),
        sharded_search(&second, &q, 50, 50)
    );
    // the item itself is its own nearest neighbour
    assert_eq!(sharded_search(&second, &q, 1, 1), vec![17]);
}

#[test]
fn i8_index_keeps_recall() {
    let (_dir, cat) = catalogue(5_000);
    let snap = tempfile::tempdir().unwrap();
    let c = IndexConfig {
        scalar: ScalarKindConfig::I8,
        ..cfg(1)
    };
    let (shards, _) = build_all(&cat, &c, snap.path());
    let q = cat.item(99).to_vec();
    let truth = brute_force(&cat, &q, 50);
    let got = sharded_search(&shards, &q, 50, 50);
    let hit = got.iter().filter(|id| truth.contains(id)).count();
    assert!(hit >= 40, "i8 recall@50 {hit}/50");
}

#[test]
fn merge_orders_by_distance_then_id() {
    let c = |id, distance| Candidate { id, distance };
    let merged = merge(
        vec![vec![c(5, 0.1), c(9, 0.3)], vec![c(2, 0.1), c(7, 0.2)]],
        3,
    );
    assert_eq!(
        merged.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![2, 5, 7]
    );
}

#[test]
fn a_single_threaded_build_is_the_same_graph_every_time() {
    // what lets replicas of a shard built on different nodes answer identically
    let (_dir, cat) = catalogue(5_000);
    let c = cfg(2);
    let snapshots: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            ShardIndex::load_or_build(dir.path(), &cat, 1, 2, &c, (2, 1), &|_, _| {}).unwrap();
            let file = std::fs::read_dir(dir.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap();
            std::fs::read(file.path()).unwrap()
        })
        .collect();
    assert!(snapshots[0].len() > 10_000);
    assert!(snapshots[0] == snapshots[1], "two builds differ");
}

#[test]
fn many_deletes_rebuild_the_shard_in_the_background_without_the_deleted_items() {
    let (_dir, cat) = catalogue(3_000);
    let cat = Arc::new(cat);
    let c = cfg(1);
    let index = Arc::new(ShardIndex::build(&cat, 0, 1, &c, (2, 1), &|_, _| {}).unwrap());
    let items = Arc::new(crate::items::Items::new(Arc::clone(&cat)));
    index.attach(Arc::clone(&items));
    // 800 deletes (a quarter of what is left is 550): overlay first, as the writers do
    let deleted: Vec<(u64, Option<Arc<ItemRow>>)> = (0..800).map(|id| (id, None)).collect();
    for (id, _) in &deleted[..100] {
        items.set(*id, None);
    }
    index.apply(&deleted[..100]).unwrap();
    assert_eq!(index.tombstones(), 100, "not due yet");
    for (id, _) in &deleted[100..] {
        items.set(*id, None);
    }
    index.apply(&deleted[100..]).unwrap();
    let t = std::time::Instant::now();
    while index.tombstones() != 0 {
        assert!(t.elapsed().as_secs() < 60, "no rebuild");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    while index.rebuilding.load(std::sync::atomic::Ordering::Acquire) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(index.len(), 2_200);
    let source = ProfileSource::new(&cat);
    let (mut hit, mut total) = (0, 0);
    for u in 0..20 {
        let p = source.profile(&format!("u{u}"));
        let got: Vec<u64> = index
            .search(&p.emb, 50)
            .unwrap()
            .iter()
            .map(|c| c.id)
            .collect();
        assert!(
            got.iter().all(|&id| id >= 800),
            "a deleted item answered: {got:?}"
        );
        let truth: Vec<u64> = (brute_force(&cat, &p.emb, 2_000).into_iter())
            .filter(|&id| id >= 800)
            .take(50)
            .collect();
        hit += got.iter().filter(|id| truth.contains(id)).count();
        total += 50;
    }
    let recall = hit as f64 / total as f64;
    assert!(recall >= 0.95, "recall@50 after the rebuild {recall}");
}
