//! Shared helpers: test data, node configs, an HTTP client.

use recd_runtime::config::Config;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

/// Items in the catalogue made by tools/workload/gen_data.py for the golden tests.
pub const WORKLOAD_ITEMS: usize = 20_000;

/// A recd-generated catalogue of 5 000 items, made once per test binary.
pub fn small_data() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        recd_actors::datagen::generate(dir.path(), 5_000, 11, |_| {}).expect("gen-data");
        dir
    })
    .path()
}

/// Reference data written by the repository's own generator (`tools/workload/gen_data.py`,
/// numpy) with the golden values its reference math computed, made once per test binary.
pub fn workload_data() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/workload/gen_data.py");
        let dir = tempfile::tempdir().expect("tempdir");
        let out = std::process::Command::new("python3")
            .arg(&script)
            .args(["--n", &WORKLOAD_ITEMS.to_string(), "--out"])
            .arg(dir.path())
            .output()
            .expect("running python3 tools/workload/gen_data.py");
        assert!(
            out.status.success(),
            "gen_data.py failed (is numpy installed? pip install -r tools/workload/requirements.txt): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .path()
}

/// A deadline header far above any stage's time: for tests about something other than
/// deadlines, on two cores shared by every test (debug builds).
pub const WIDE_BUDGET: (&str, &str) = ("x-deadline-ms", "5000");

/// The admin token of every test node; [`client`] presents it on every request (the
/// public port ignores it, the admin port needs it).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A single-node config over `data_dir`, HTTP and the admin port on free loopback
/// ports, small pools.
pub fn config(data_dir: &Path) -> Config {
    let env: Vec<(String, String)> = Vec::new();
    let mut c = recd_runtime::config::load(None, &[], env).expect("default config");
    c.node.data_dir = data_dir.to_path_buf();
    c.node.http_listen = "127.0.0.1:0".into();
    c.admin.listen = "127.0.0.1:0".into();
    c.admin.token = ADMIN_TOKEN.into();
    c.data.generate_if_missing = false;
    c.index.shards = 2;
    c.features.shards = 2;
    c.ranker.workers = 2;
    c.gateway.pipeline_workers = 2;
    c.compute.threads = 2;
    // each node its own store: tests in one process share the catalogue, not the profiles
    let store = tempfile::Builder::new().prefix("recd-store-").tempdir();
    c.features.store.dir = Some(store.expect("store tempdir").keep());
    c
}

/// A client with a timeout (every remote call has one) that presents [`ADMIN_TOKEN`].
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {ADMIN_TOKEN}")
        .parse()
        .expect("header value");
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .default_headers(headers)
        .build()
        .expect("http client")
}

/// POSTs a JSON body to /recommend with extra headers; returns status and JSON body.
pub async fn recommend(
    client: &reqwest::Client,
    addr: std::net::SocketAddr,
    body: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut req = client
        .post(format!("http://{addr}/recommend"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}

/// The Prometheus text of `GET http://{addr}/metrics`.
pub async fn metrics_text(client: &reqwest::Client, addr: std::net::SocketAddr) -> String {
    let resp = client.get(format!("http://{addr}/metrics")).send().await;
    resp.expect("metrics scraped")
        .text()
        .await
        .expect("metrics body")
}

/// Sum of the samples of `name` whose labels include every one of `labels`
/// (`kind="index"`).
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Status of `GET http://{addr}{path}`.
pub async fn get_status(client: &reqwest::Client, addr: std::net::SocketAddr, path: &str) -> u16 {
    client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .expect("request sent")
        .status()
        .as_u16()
}

/// Polls `f` every 10 ms until it returns `Some`; panics after `secs` seconds.
pub async fn poll<T, F, Fut>(secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
