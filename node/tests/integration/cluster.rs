//! Real `recd-node` processes on loopback forming a cluster from configs/local-cluster.yaml
//! (3 nodes, R = 2) over mutual TLS (certificates from `recd-node gen-certs`): membership
//! from seeds, the same placement on every node, the same top-k as one node, a peer with
//! the wrong cookie, with a certificate from another CA, or without TLS refused, garbage
//! on the cluster port survived. Failover under load is in `failover.rs`.

use crate::common::{client, poll, small_data};
use recd_node::Node;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Cluster tests run one at a time: nine node processes at once on two cores would
/// starve heartbeats and test the machine, not recd.
pub(crate) static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One `recd-node run` process.
pub(crate) struct NodeProc {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) admin: SocketAddr,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NodeProc {
    /// Sends a signal (`STOP`, `CONT`) to the process.
    pub(crate) fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
    }
}

/// Where a node's log is kept (in the temp folder, for a failed run).
pub(crate) fn log_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "recd-cluster-test-{}-{name}.log",
        std::process::id()
    ))
}

fn log_file(name: &str) -> Stdio {
    std::fs::File::create(log_path(name)).map_or_else(|_| Stdio::null(), Stdio::from)
}

/// A cluster CA with certificates for recd-0..2 (SANs 127.0.0.1 and localhost), written
/// by `recd-node gen-certs` into a folder of its own.
pub(crate) fn certs(which: &str) -> std::path::PathBuf {
    static DIRS: std::sync::Mutex<Vec<(String, tempfile::TempDir)>> =
        std::sync::Mutex::new(Vec::new());
    let mut dirs = DIRS.lock().unwrap();
    if let Some((_, d)) = dirs.iter().find(|(w, _)| w == which) {
        return d.path().to_path_buf();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_recd-node"))
        .args(["gen-certs", "--out"])
        .arg(dir.path())
        .args(["--node", "recd-0", "--node", "recd-1", "--node", "recd-2"])
        .args(["--san", "127.0.0.1", "--san", "localhost"])
        .output()
        .expect("recd-node gen-certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().to_path_buf();
    dirs.push((which.to_owned(), dir));
    path
}

/// The environment that points node `name` at its certificate in `dir`.
pub(crate) fn tls_env(dir: &Path, name: &str) -> Vec<(String, String)> {
    let file = |f: String| dir.join(f).display().to_string();
    vec![
        ("RECD__CLUSTER__TLS__CA".into(), file("ca.pem".into())),
        (
            "RECD__CLUSTER__TLS__CERT".into(),
            file(format!("{name}.pem")),
        ),
        (
            "RECD__CLUSTER__TLS__KEY".into(),
            file(format!("{name}-key.pem")),
        ),
    ]
}

/// `env` as the `(&str, &str)` pairs [`spawn_with`] takes.
pub(crate) fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A port free now, below Linux's ephemeral range (32768+), so no outgoing connection
/// of this machine takes it before the node binds it.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 500) as u16 * 20;
    loop {
        let port = 20_000 + (base - 20_000 + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A port `p` with `p + 1` free too (a node's HTTP and admin ports), both taken from
/// [`free_port`]'s sequence so no other caller is handed either.
pub(crate) fn free_port_pair() -> u16 {
    loop {
        let (p, q) = (free_port(), free_port());
        if q == p + 1 {
            return p;
        }
    }
}

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Environment every node of a test cluster gets on top of local-cluster.yaml: the
/// cluster's certificates among it.
fn test_env(name: &str, cookie: &str) -> Vec<(String, String)> {
    let tls = tls_env(&certs("cluster"), name);
    [
        ("RECD__DATA__GENERATE_IF_MISSING", "false"),
        ("RECD__NODE__LOG_FORMAT", "text"),
        ("RECD__GATEWAY__PIPELINE_WORKERS", "2"),
        ("RECD__RANKER__WORKERS", "1"),
        ("RECD__COMPUTE__THREADS", "1"),
        ("RECD__CLUSTER__COOKIE", cookie),
        ("RECD__CLUSTER__NODE_NAME", name),
        ("RECD__ADMIN__TOKEN", crate::common::ADMIN_TOKEN),
        ("RUST_LOG", "info"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(tls)
    .collect()
}

/// Starts `name` of configs/local-cluster.yaml on `cluster_port`, joining `seeds`.
pub(crate) fn spawn(name: &str, cookie: &str, cluster_port: u16, seeds: &[u16]) -> NodeProc {
    spawn_with(name, cookie, cluster_port, seeds, &[])
}

/// [`spawn`] with extra environment (config overrides).
pub(crate) fn spawn_with(
    name: &str,
    cookie: &str,
    cluster_port: u16,
    seeds: &[u16],
    env: &[(&str, &str)],
) -> NodeProc {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let plaintext = env.iter().any(|(k, _)| *k == "RECD__CLUSTER__TLS");
    let child = Command::new(env!("CARGO_BIN_EXE_recd-node"))
        .current_dir(workspace())
        .args(["run", "--config", "configs/local-cluster.yaml"])
        .args(["--http-listen", &http.to_string()])
        .args(["--cluster-listen", &format!("127.0.0.1:{cluster_port}")])
        .arg("--data-dir")
        .arg(small_data())
        .args(if seeds.is_empty() {
            Vec::new()
        } else {
            vec!["--seeds".to_owned(), seeds.join(",")]
        })
        .envs(test_env(name, cookie).into_iter().filter(|(k, _)| {
            // `RECD__CLUSTER__TLS=~` in `env` runs the node without TLS
            !(plaintext && k.starts_with("RECD__CLUSTER__TLS__"))
        }))
        .env("RECD__ADMIN__LISTEN", admin.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log_file(name))
        .spawn()
        .expect("starting recd-node");
    NodeProc {
        name: name.to_owned(),
        child,
        http,
        admin,
    }
}

/// Starts recd-0..2 (each seeded with the ones before it) and waits until all are ready.
pub(crate) async fn three_nodes(ports: &[u16]) -> Vec<NodeProc> {
    three_nodes_with(ports, &[]).await
}

/// [`three_nodes`] with extra environment for every node.
pub(crate) async fn three_nodes_with(ports: &[u16], env: &[(&str, &str)]) -> Vec<NodeProc> {
    let nodes = vec![
        spawn_with("recd-0", "s3cret", ports[0], &[], env),
        spawn_with("recd-1", "s3cret", ports[1], &[ports[0]], env),
        spawn_with("recd-2", "s3cret", ports[2], &[ports[0], ports[1]], env),
    ];
    let c = client();
    for n in &nodes {
        poll(120, || async {
            let r = c
                .get(format!("http://{}/readyz", n.http))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }
    nodes
}

pub(crate) async fn cluster_view(
    client: &reqwest::Client,
    node: &NodeProc,
) -> Option<serde_json::Value> {
    let resp = client
        .get(format!("http://{}/cluster", node.admin))
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

pub(crate) fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

/// Whether `peer` is up in `node`'s view.
pub(crate) async fn peer_up(client: &reqwest::Client, node: &NodeProc, peer: &str) -> Option<bool> {
    let v = cluster_view(client, node).await?;
    let peers = v["peers"].as_array()?;
    let p = peers.iter().find(|p| p["name"] == peer)?;
    p["up"].as_bool()
}

/// Polls until every node in `nodes` sees exactly `want` as members; returns the views.
pub(crate) async fn converge(
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
                if names(&v["members"]) != want {
                    return None;
                }
                views.push(v);
            }
            Some(views)
        }
    })
    .await
}

/// The top-k ids a node answers for `user`.
pub(crate) async fn top_ids(
    client: &reqwest::Client,
    http: SocketAddr,
    user: &str,
) -> (Vec<u64>, f64) {
    let body = format!(r#"{{"user_id":"{user}","topk":10}}"#);
    let (status, json) = crate::common::recommend(client, http, &body, &[]).await;
    assert_eq!(status, 200, "{json}");
    let ids = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_u64().unwrap())
        .collect();
    (ids, json["coverage"].as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_join_serve_the_single_node_top_k_refuse_a_wrong_cookie_and_survive_garbage() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let client = client();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    // one node with the same shards over the same data (and the same single-threaded
    // index builds, so the same graphs)
    let file = workspace().join("configs/local-cluster.yaml");
    let env = test_env("recd-0", "unused");
    let mut config = recd_runtime::config::load(Some(&file), &[], env).unwrap();
    config.cluster.nodes.clear();
    config.cluster.listen = None;
    config.node.data_dir = small_data().to_path_buf();
    config.node.http_listen = "127.0.0.1:0".into();
    config.experiments.scenarios_file = Some(workspace().join("configs/ab_scenarios.yaml"));
    let single = Node::start(config).await.unwrap();
    let users = ["u1", "u42", "u123", "u9999", "nobody"];
    let mut expected = Vec::new();
    for user in users {
        expected.push(top_ids(&client, single.http_addr, user).await);
    }
    single.shutdown().await;

    let nodes = three_nodes(&ports).await;
    let views = converge(
        &client,
        &nodes.iter().collect::<Vec<_>>(),
        &["recd-0", "recd-1", "recd-2"],
    )
    .await;
    let placement = &views[0]["placement"];
    assert_eq!(placement["index"].as_array().unwrap().len(), 4);
    for v in &views[1..] {
        assert_eq!(
            &v["placement"], placement,
            "every node derives the same map"
        );
    }
    for replicas in placement["index"].as_array().unwrap() {
        let r = names(replicas);
        assert_eq!(r.len(), 2, "two replicas per shard");
        assert_ne!(r[0], r[1], "on distinct nodes");
    }
    // the same map in the metrics: one sample per replica placed
    let text = crate::common::metrics_text(&client, nodes[1].http).await;
    for (s, replicas) in placement["index"].as_array().unwrap().iter().enumerate() {
        for node in names(replicas) {
            let labels = [format!("shard=\"{s}\""), format!("node=\"{node}\"")];
            let labels = ["kind=\"index\"", &labels[0], &labels[1]];
            assert_eq!(
                crate::common::metric_sum(&text, "recd_shard_placement", &labels),
                1.0
            );
        }
    }
    let placed = crate::common::metric_sum(&text, "recd_shard_placement", &["kind=\"index\""]);
    assert_eq!(placed, 8.0, "4 index shards x 2 replicas");

    // every replica placed is live once all nodes are ready
    let live = poll(30, || async {
        let v = cluster_view(&client, &nodes[0]).await?;
        let live = v["live"]["index"].clone();
        let all = (0..4).all(|s| names(&live[s]).len() == 2);
        all.then_some(live)
    })
    .await;
    for s in 0..4 {
        let mut want = names(&placement["index"][s]);
        want.sort();
        assert_eq!(names(&live[s]), want);
    }

    // the cluster answers as the single node did, through every node
    for (user, want) in users.iter().zip(&expected) {
        for n in &nodes {
            assert_eq!(
                &top_ids(&client, n.http, user).await,
                want,
                "{user} via {}",
                n.name
            );
        }
    }

    // a node with another cookie reaches the seed but never becomes a member
    let intruder = spawn("recd-2", "wrong", ports[3], &[ports[0]]);
    poll(60, || async {
        cluster_view(&client, &intruder).await.map(|_| ())
    })
    .await;
    // it shares recd-2's name, so the members' count alone would not see it join: its own
    // view must stay alone, and the members must see no fourth peer session
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alone = cluster_view(&client, &intruder).await.unwrap();
    assert_eq!(names(&alone["members"]), ["recd-2"], "{alone}");
    for _ in 0..20 {
        let v = cluster_view(&client, &nodes[0]).await.unwrap();
        assert_eq!(names(&v["members"]).len(), 3, "{v}");
        assert!(v["peers"].as_array().unwrap().len() <= 2, "{v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(intruder);

    // the right cookie but a certificate from another CA, or no TLS at all: refused at
    // the handshake, while a connection that never says anything is held open (the
    // accept loop does not wait for it)
    let silent = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    let rogue_certs = certs("rogue");
    let rogue_tls = tls_env(&rogue_certs, "recd-2");
    let rogue_env = borrowed(&rogue_tls);
    let plaintext_env = [("RECD__CLUSTER__TLS", "~")];
    for (what, env) in [
        ("another CA", &rogue_env[..]),
        ("no TLS", &plaintext_env[..]),
    ] {
        let intruder = spawn_with("recd-2", "s3cret", ports[3], &[ports[0]], env);
        poll(60, || async {
            cluster_view(&client, &intruder).await.map(|_| ())
        })
        .await;
        let refused = || {
            let log = std::fs::read_to_string(log_path("recd-0")).unwrap_or_default();
            log.matches("TLS handshake failed").count()
        };
        let before = refused();
        poll(30, || async { (refused() > before).then_some(()) }).await;
        let alone = cluster_view(&client, &intruder).await.unwrap();
        assert_eq!(names(&alone["members"]), ["recd-2"], "{what}: {alone}");
        let v = cluster_view(&client, &nodes[0]).await.unwrap();
        assert!(v["peers"].as_array().unwrap().len() <= 2, "{what}: {v}");
    }
    drop(silent);

    // garbage, a huge length prefix and a truncated frame on the cluster port
    for junk in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        vec![0xff; 8 * 1024],
        u64::MAX.to_be_bytes().to_vec(),
        [&(64u64 << 20).to_be_bytes()[..], &[7u8; 100]].concat(),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
        let _ = s.write_all(&junk);
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    converge(
        &client,
        &nodes.iter().collect::<Vec<_>>(),
        &["recd-0", "recd-1", "recd-2"],
    )
    .await;
    let (_, coverage) = top_ids(&client, nodes[0].http, "u7").await;
    assert_eq!(coverage, 1.0, "the node still serves every shard");
}
