//! Roles mixed across nodes: an ingress node that holds no shard serves entirely from
//! two data nodes, a data node refuses `/recommend`, and losing one data node loses
//! nothing (every shard has its second replica on the other).

use crate::cluster::{cluster_view, free_port, names, three_nodes_with, ONE_CLUSTER_AT_A_TIME};
use crate::common::{client, metric_sum, metrics_text, recommend};

const ROSTER: &str = "[{name: recd-0, roles: [ingress, ranker]}, \
                      {name: recd-1, roles: [features, index]}, \
                      {name: recd-2, roles: [features, index, ranker]}]";

fn counter(metrics: &str, kind: &str) -> f64 {
    let kind = format!("kind=\"{kind}\"");
    metric_sum(
        metrics,
        "recd_remote_calls_total",
        &[&kind, "outcome=\"ok\""],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_only_node_serves_from_data_nodes_and_survives_losing_one() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let client = client();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut nodes = three_nodes_with(&ports, &[("RECD__CLUSTER__NODES", ROSTER)]).await;

    let view = cluster_view(&client, &nodes[0]).await.unwrap();
    assert_eq!(view["roles"], serde_json::json!(["ingress", "ranker"]));
    for kind in ["index", "features"] {
        for replicas in view["placement"][kind].as_array().unwrap() {
            let mut r = names(replicas);
            r.sort();
            assert_eq!(
                r,
                ["recd-1", "recd-2"],
                "{kind} shards live on the data nodes"
            );
        }
    }

    let body = r#"{"user_id":"u77","topk":10}"#;
    let (status, json) = recommend(&client, nodes[0].http, body, &[]).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["items"].as_array().unwrap().len(), 10);
    assert_eq!(json["coverage"], 1.0, "{json}");
    assert_eq!(json["degraded"], serde_json::json!([]), "{json}");
    let metrics = metrics_text(&client, nodes[0].http).await;
    assert!(
        counter(&metrics, "index") >= 4.0,
        "one search per index shard went remote"
    );
    assert!(counter(&metrics, "features") >= 1.0);

    let (status, json) = recommend(&client, nodes[1].http, body, &[]).await;
    assert_eq!(status, 503, "{json}");
    assert!(
        json["message"].as_str().unwrap().contains("ingress"),
        "{json}"
    );

    let _ = nodes[2].child.kill();
    let _ = nodes[2].child.wait();
    for i in 0..50 {
        let body = format!(r#"{{"user_id":"u{i}","topk":10}}"#);
        let (status, json) = recommend(&client, nodes[0].http, &body, &[]).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["coverage"], 1.0, "recd-1 holds every shard: {json}");
    }
    nodes.truncate(2);
}
