//! Real `recd-node` processes on loopback forming a cluster: membership from seeds,
//! the same placement on every node, a peer with the wrong cookie refused, and a
//! kill -9 leaving the survivors with a consistent map.

use crate::common::{client, poll, small_data};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

struct NodeProc {
    name: String,
    child: Child,
    http: u16,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Each node's log, kept in the temp folder for a failed run.
fn log_file(name: &str) -> Stdio {
    let path = std::env::temp_dir().join(format!("recd-cluster-test-{name}.log"));
    std::fs::File::create(path).map_or_else(|_| Stdio::null(), Stdio::from)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(name: &str, cookie: &str, cluster_port: u16, seeds: &[u16]) -> NodeProc {
    let http = free_port();
    let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let child = Command::new(env!("CARGO_BIN_EXE_recd-node"))
        .args(["run", "--http-listen", &format!("127.0.0.1:{http}")])
        .arg("--data-dir")
        .arg(small_data())
        .env("RECD__DATA__GENERATE_IF_MISSING", "false")
        .env("RECD__INDEX__SHARDS", "2")
        .env("RECD__FEATURES__SHARDS", "2")
        .env("RECD__NODE__LOG_FORMAT", "text")
        .env("RECD__CLUSTER__NODE_NAME", name)
        .env("RECD__CLUSTER__HOSTNAME", "127.0.0.1")
        .env("RECD__CLUSTER__LISTEN", format!("127.0.0.1:{cluster_port}"))
        .env("RECD__CLUSTER__SEEDS", format!("[{}]", seeds.join(", ")))
        .env("RECD__CLUSTER__COOKIE", cookie)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file(name))
        .spawn()
        .expect("starting recd-node");
    NodeProc {
        name: format!("{name}@127.0.0.1"),
        child,
        http,
    }
}

async fn cluster_view(client: &reqwest::Client, node: &NodeProc) -> Option<serde_json::Value> {
    let resp = client
        .get(format!("http://127.0.0.1:{}/cluster", node.http))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

fn members(view: &serde_json::Value) -> Vec<String> {
    view["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

/// Polls until every node in `nodes` sees exactly `want` as members; returns the views.
async fn converge(
    client: &reqwest::Client,
    nodes: &[&NodeProc],
    want: &[&str],
) -> Vec<serde_json::Value> {
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    poll(60, || {
        let want = want.clone();
        async move {
            let mut views = Vec::new();
            for n in nodes {
                let v = cluster_view(client, n).await?;
                if members(&v) != want {
                    return None;
                }
                views.push(v);
            }
            Some(views)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_agree_on_placement_refuse_a_wrong_cookie_and_survive_a_kill() {
    let client = client();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let a = spawn("recd-0", "s3cret", ports[0], &[]);
    let b = spawn("recd-1", "s3cret", ports[1], &[ports[0]]);
    // seeds list the members started before (as a StatefulSet lists every pod): the
    // join loops then also re-dial a peer whose transitive connection lost a race
    let c = spawn("recd-2", "s3cret", ports[2], &[ports[0], ports[1]]);
    let names = [a.name.clone(), b.name.clone(), c.name.clone()];

    let views = converge(&client, &[&a, &b, &c], &[&names[0], &names[1], &names[2]]).await;
    let placement = &views[0]["placement"];
    assert_eq!(placement["index"].as_array().unwrap().len(), 2);
    for v in &views[1..] {
        assert_eq!(
            &v["placement"], placement,
            "every node derives the same map"
        );
    }
    for replicas in placement["index"].as_array().unwrap() {
        let r: Vec<_> = replicas.as_array().unwrap().iter().collect();
        assert_eq!(r.len(), 2, "two replicas per shard");
        assert_ne!(r[0], r[1], "on distinct nodes");
    }

    // a node with another cookie reaches the seed but never becomes a member
    let intruder = spawn("recd-9", "wrong", ports[3], &[ports[0]]);
    poll(60, || async {
        cluster_view(&client, &intruder).await.map(|_| ())
    })
    .await;
    for _ in 0..20 {
        let v = cluster_view(&client, &a).await.unwrap();
        assert!(!members(&v).contains(&intruder.name), "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(intruder);

    // kill -9 of a member: the survivors drop it and agree on the new map
    let victim = c.name.clone();
    drop(c);
    let views = converge(&client, &[&a, &b], &[&names[0], &names[1]]).await;
    assert_eq!(views[0]["placement"], views[1]["placement"]);
    assert!(!views[0]["placement"].to_string().contains(&victim));
}
