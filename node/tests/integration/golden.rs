//! recd reproduces the golden values of tools/workload (golden.json from gen_data.py's reference math): profile
//! derivation, variants, exact candidates and the re-ranked top-10, both in the
//! in-process kernel and over HTTP through every actor.

use crate::common::{client, config, recommend, workload_data};
use recd_actors::candidates::index::merge;
use recd_actors::experiments::AbScenarios;
use recd_actors::features::profile::{fnv1a64, is_known_user};
use recd_actors::kernel::{Kernel, StageCost};
use recd_node::Node;
use recd_runtime::config::{Config, ScalarKindConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    user_id: String,
    fnv1a64: u64,
    known: bool,
    variant: String,
    embedding_first4: Vec<f32>,
    features_first4: Vec<f32>,
    exact_top200_first10: Vec<u64>,
    exact_rerank_top10: Vec<Scored>,
}

#[derive(Deserialize)]
struct Scored {
    id: u64,
    score: f32,
}

fn golden() -> Vec<Golden> {
    let text = std::fs::read_to_string(workload_data().join("golden.json")).expect("golden.json");
    serde_json::from_str(&text).expect("golden.json parses")
}

/// Exact search over f32 vectors, every shard asked for all candidates: the merged
/// candidates are the brute-force top-200.
fn exact_config() -> Config {
    let mut c = config(workload_data());
    c.index.backend = recd_runtime::config::IndexBackend::Flat;
    c.index.scalar = ScalarKindConfig::F32;
    c.index.per_shard_factor = c.index.shards as f32;
    c
}

/// Same ids in order, except where neighbouring scores tie within 1e-5.
fn assert_top10(user: &str, got: &[(u64, f32)], want: &[Scored]) {
    assert_eq!(got.len(), want.len(), "{user}: length");
    for (i, ((id, score), w)) in got.iter().zip(want).enumerate() {
        assert!(
            (score - w.score).abs() <= 1e-4,
            "{user}[{i}]: score {score} vs golden {}",
            w.score
        );
        if *id != w.id {
            assert!(
                (score - w.score).abs() <= 1e-5,
                "{user}[{i}]: id {id} vs golden {} (not a tie)",
                w.id
            );
        }
    }
}

#[test]
fn profiles_hashes_and_variants_match_golden() {
    let kernel = Kernel::load(&exact_config(), 2).unwrap();
    let ab = AbScenarios::default();
    for g in golden() {
        assert_eq!(fnv1a64(&g.user_id), g.fnv1a64, "{}: fnv", g.user_id);
        assert_eq!(is_known_user(&g.user_id), g.known, "{}: known", g.user_id);
        assert_eq!(ab.assign(&g.user_id), g.variant, "{}: variant", g.user_id);
        let p = kernel.source.profile(&g.user_id);
        for (a, b) in p
            .emb
            .iter()
            .zip(&g.embedding_first4)
            .chain(p.feats.iter().zip(&g.features_first4))
        {
            assert!(
                (a - b).abs() <= 1e-6,
                "{}: profile value {a} vs golden {b}",
                g.user_id
            );
        }
    }
}

#[test]
fn kernel_exact_top10_matches_golden() {
    let kernel = Kernel::load(&exact_config(), 2).unwrap();
    for g in golden() {
        let p = kernel.source.profile(&g.user_id);
        let lists: Vec<_> = kernel
            .shards
            .iter()
            .map(|s| s.search(&p.emb, kernel.per_shard_k).unwrap())
            .collect();
        let cand: Vec<u64> = merge(lists, 10).into_iter().map(|c| c.id).collect();
        assert_eq!(
            cand, g.exact_top200_first10,
            "{}: exact candidates",
            g.user_id
        );
        let top = kernel
            .recommend(&g.user_id, 10, &mut StageCost::default())
            .unwrap();
        assert_top10(&g.user_id, &top, &g.exact_rerank_top10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_exact_top10_matches_golden() {
    let node = Node::start(exact_config()).await.unwrap();
    let client = client();
    for g in golden() {
        let body = serde_json::json!({"user_id": g.user_id, "topk": 10}).to_string();
        let (status, json) = recommend(&client, node.http_addr, &body, &[]).await;
        if g.user_id.is_empty() {
            assert_eq!(status, 400, "an empty user_id is refused: {json}");
            continue;
        }
        assert_eq!(status, 200, "{}: {json}", g.user_id);
        assert_eq!(json["variant"], g.variant.as_str());
        assert_eq!(json["degraded"], serde_json::json!([]));
        assert_eq!(json["coverage"], 1.0);
        let items: Vec<(u64, f32)> = json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["id"].as_u64().unwrap(),
                    i["score"].as_f64().unwrap() as f32,
                )
            })
            .collect();
        assert_top10(&g.user_id, &items, &g.exact_rerank_top10);
    }
    node.shutdown().await;
}
