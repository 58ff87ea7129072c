//! Trust on real nodes: per-tenant keys, scopes and buckets on the public port; one
//! request's trace id followed through the logs of two nodes; a rolling restart (each
//! node SIGTERM'd and restarted in turn) under load with no failed request; renewed
//! cluster certificates taken up without a restart.

use crate::cluster::{
    borrowed, certs, converge, free_port, log_path, spawn, spawn_with, three_nodes_with, tls_env,
    ONE_CLUSTER_AT_A_TIME,
};
use crate::common::{client, config, metric_sum, metrics_text, poll, recommend, small_data};
use recd_node::Node;
use recd_runtime::config::{Scope, TenantConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A log without its ANSI colour codes.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn sha(key: &str) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(key.as_bytes())?;
            c.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_map_to_tenants_with_scopes_and_their_own_buckets() {
    let mut c = config(small_data());
    c.tenants = vec![
        TenantConfig {
            name: "shop".into(),
            key_sha256: vec![sha("key-shop")],
            scopes: vec![Scope::Read, Scope::Write],
            qps: 1,
            burst: 3,
        },
        TenantConfig {
            name: "viewer".into(),
            key_sha256: vec![sha("key-view")],
            scopes: vec![Scope::Read],
            qps: 0,
            burst: 0,
        },
    ];
    let node = Node::start(c).await.unwrap();
    let (http, addr) = (client(), node.http_addr);
    let body = r#"{"user_id":"u1","topk":5}"#;
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let (s, json) = recommend(&http, addr, body, &[("traceparent", trace)]).await;
    assert_eq!(
        (s, json["code"].as_str()),
        (401, Some("unauthenticated")),
        "{json}"
    );
    let (s, _) = recommend(&http, addr, body, &[("x-api-key", "nope")]).await;
    assert_eq!(s, 401);
    // a refusal carries the trace and the caller's request id too
    let r = (http.post(format!("http://{addr}/recommend")))
        .header("traceparent", trace)
        .header("x-request-id", "caller-42")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "caller-42");
    let back = r.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{back}"
    );
    // the viewer may read, not write
    let (s, _) = recommend(&http, addr, body, &[("x-api-key", "key-view")]).await;
    assert_eq!(s, 200);
    let write = (http.post(format!("http://{addr}/v1/events")))
        .header("x-api-key", "key-view")
        .header("content-type", "application/json")
        .body(r#"{"events":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(write.status().as_u16(), 403);
    // shop: a burst of 3, then 429 naming shop, while the viewer is served
    let mut shop = Vec::new();
    for _ in 0..5 {
        shop.push(recommend(&http, addr, body, &[("x-api-key", "key-shop")]).await);
    }
    let refused: Vec<_> = shop.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!refused.is_empty() && shop[0].0 == 200, "{shop:?}");
    assert!(
        refused[0].1["message"].as_str().unwrap().contains("shop"),
        "{:?}",
        refused[0]
    );
    for _ in 0..10 {
        assert_eq!(
            recommend(&http, addr, body, &[("x-api-key", "key-view")])
                .await
                .0,
            200
        );
    }
    // probes and metrics need no key; the counter has each tenant's answers
    let text = metrics_text(&http, addr).await;
    let count = |t: &str, code: &str| {
        metric_sum(
            &text,
            "recd_tenant_requests_total",
            &[&format!("tenant=\"{t}\""), &format!("code=\"{code}\"")],
        )
    };
    assert_eq!(count("shop", "429"), refused.len() as f64);
    assert_eq!(count("viewer", "200"), 11.0);
    assert_eq!(count("viewer", "403"), 1.0);
    assert_eq!(count("unauthenticated", "401"), 3.0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_requests_trace_is_followed_through_two_nodes_logs() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let ports: Vec<u16> = (0..3).map(|_| crate::cluster::free_port()).collect();
    let env = [("RUST_LOG", "info,recd_actors::remote::endpoint=debug")];
    let nodes = three_nodes_with(&ports, &env).await;
    let http = client();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    // a few single requests so that at least one batch holds only ours
    let mut seen_remote = None;
    for i in 0..20 {
        let parent = format!("00-{trace}-b7ad6b71692033{i:02x}-01");
        let body = format!(r#"{{"user_id":"u{}","topk":10}}"#, 100 + i);
        let (s, json) = recommend(&http, nodes[0].http, &body, &[("traceparent", &parent)]).await;
        assert_eq!(s, 200, "{json}");
        seen_remote = poll(5, || async {
            let hit = nodes[1..].iter().find(|n| {
                let log = std::fs::read_to_string(log_path(&n.name)).unwrap_or_default();
                log.lines()
                    .any(|l| l.contains("remote call served") && l.contains(trace))
            });
            Some(hit.map(|n| n.name.clone()))
        })
        .await;
        if seen_remote.is_some() {
            break;
        }
    }
    let here = plain(&std::fs::read_to_string(log_path("recd-0")).unwrap());
    let access: Vec<&str> = here
        .lines()
        .filter(|l| l.contains("recd::access") && l.contains(trace))
        .collect();
    assert!(
        !access.is_empty(),
        "the access log of recd-0 names the trace"
    );
    for field in [
        "tenant=",
        "lane=",
        "variant=",
        "status=200",
        "features_ms=",
        "rank_ms=",
    ] {
        assert!(access[0].contains(field), "{field} in {}", access[0]);
    }
    let remote = seen_remote.expect("a peer's log names the trace in a remote call span");
    println!(
        "trace {trace}: recd-0 access log ({} lines) and {remote}'s remote call spans",
        access.len()
    );
}

/// Closed-loop load over every node in `http` (a client that, like a load balancer,
/// takes the next node when one refuses with 503 or is gone): per answer, whether it
/// failed after the retry and whether it was partial.
fn balanced_load(
    http: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<(bool, bool)>>>,
) {
    for w in 0..3u64 {
        let (http, stop, log) = (Arc::clone(&http), Arc::clone(&stop), Arc::clone(&log));
        tokio::spawn(async move {
            let c = client();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += 3;
                let body = format!(r#"{{"user_id":"u{}","topk":10}}"#, i % 5000);
                let mut outcome = (true, false);
                for attempt in 0..3 {
                    let addrs = http.lock().unwrap().clone();
                    let addr = addrs[(i as usize + attempt) % addrs.len()];
                    let r = (c.post(format!("http://{addr}/recommend")))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let Ok(r) = r else { continue };
                    if r.status() == 503 && r.headers().contains_key("retry-after") {
                        continue;
                    }
                    let ok = r.status() == 200;
                    let json: serde_json::Value = r.json().await.unwrap_or_default();
                    let partial = json["coverage"].as_f64().unwrap_or(0.0) < 1.0
                        || json["degraded"].as_array().is_some_and(|d| !d.is_empty());
                    outcome = (!ok, partial);
                    break;
                }
                log.lock().unwrap().push(outcome);
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_fails_no_request() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let ports: Vec<u16> = (0..3).map(|_| crate::cluster::free_port()).collect();
    let mut nodes = three_nodes_with(&ports, &[]).await;
    let http = Arc::new(Mutex::new(nodes.iter().map(|n| n.http).collect::<Vec<_>>()));
    let (stop, log) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(Mutex::new(Vec::new())),
    );
    balanced_load(Arc::clone(&http), Arc::clone(&stop), Arc::clone(&log));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seeds: [&[u16]; 3] = [&[], &[ports[0]], &[ports[0], ports[1]]];
    for i in 0..3 {
        nodes[i].signal("TERM");
        let exited = poll(30, || {
            let done = nodes[i].child.try_wait().ok().flatten();
            async move { done }
        })
        .await;
        assert!(
            exited.success(),
            "recd-{i} drained and exited 0: {exited:?}"
        );
        nodes[i] = spawn(&format!("recd-{i}"), "s3cret", ports[i], seeds[i]);
        let (c, addr) = (client(), nodes[i].http);
        poll(120, || {
            let c = c.clone();
            async move {
                let r = c.get(format!("http://{addr}/readyz")).send().await.ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        http.lock().unwrap()[i] = addr;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = log.lock().unwrap();
    let failed = log.iter().filter(|(f, _)| *f).count();
    let partial = log.iter().filter(|(f, p)| !*f && *p).count();
    println!(
        "rolling restart: {} requests, {failed} failed, {partial} partial",
        log.len()
    );
    assert!(log.len() > 100, "the load ran: {}", log.len());
    assert_eq!(failed, 0, "no request failed during the rolling restart");
}

/// Polls until `name`'s log holds `text`.
async fn logged(name: &str, text: &str) {
    poll(30, || async {
        let log = std::fs::read_to_string(log_path(name)).ok()?;
        plain(&log).contains(text).then_some(())
    })
    .await
}

/// cert-manager renews certificates in place: recd-0 and recd-1 start on one CA, and while
/// they run their files are overwritten — first with a broken certificate (reported, the
/// old one stays), then with another CA's. recd-2, which has only the new CA and dials
/// nobody, is then reached by both: their dialling side presents and checks the renewed
/// certificates (and recd-2's verdict on them is the new CA's). Their own session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_taken_up_without_a_restart() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let (old, new) = (certs("cluster"), certs("renewed"));
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    // node i's three files, in a folder of its own, copied from the certificates in `from`
    let place = |from: &std::path::Path, i: usize| {
        let name = format!("recd-{i}");
        for f in [
            "ca.pem".to_owned(),
            format!("{name}.pem"),
            format!("{name}-key.pem"),
        ] {
            std::fs::copy(from.join(&f), dirs[i].path().join(&f)).unwrap();
        }
    };
    let env: Vec<Vec<(String, String)>> = (0..2)
        .map(|i| {
            place(&old, i);
            let mut env = tls_env(dirs[i].path(), &format!("recd-{i}"));
            env.push(("RECD__CLUSTER__TLS__RELOAD_MS".into(), "200".into()));
            env
        })
        .collect();
    let env_of = |i: usize| borrowed(&env[i]);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    // both seeded with recd-2 before it runs: they keep dialling it (and fail) meanwhile
    let n0 = spawn_with("recd-0", "s3cret", ports[0], &[ports[2]], &env_of(0));
    let n1 = spawn_with(
        "recd-1",
        "s3cret",
        ports[1],
        &[ports[0], ports[2]],
        &env_of(1),
    );
    let client = client();
    converge(&client, &[&n0, &n1], &["recd-0", "recd-1"]).await;

    std::fs::write(dirs[0].path().join("recd-0.pem"), "not a certificate").unwrap();
    logged("recd-0", "cluster TLS files changed but do not load").await;
    place(&new, 0);
    place(&new, 1);
    for name in ["recd-0", "recd-1"] {
        logged(name, "cluster TLS reloaded").await;
    }
    // recd-2 trusts only the new CA and presents a certificate only it signed
    let tls2 = tls_env(&new, "recd-2");
    let n2 = spawn_with("recd-2", "s3cret", ports[2], &[], &borrowed(&tls2));
    converge(&client, &[&n0, &n1, &n2], &["recd-0", "recd-1", "recd-2"]).await;
    let log = plain(&std::fs::read_to_string(log_path("recd-2")).unwrap());
    assert!(
        !log.contains("cluster peer refused"),
        "recd-2 refused a renewed peer: {log}"
    );
}

/// A node whose own certificate its CA did not sign is refused at start, with the files
/// named, rather than failing every handshake later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_ca_is_refused_at_start() {
    let (ours, theirs) = (certs("cluster"), certs("rogue"));
    let ca = ours.join("ca.pem").display().to_string();
    let mut env = tls_env(&theirs, "recd-0");
    env.retain(|(k, _)| k != "RECD__CLUSTER__TLS__CA");
    env.push(("RECD__CLUSTER__TLS__CA".into(), ca));
    // recd-0 of the roster, logged apart from the cluster tests' recd-0
    env.push(("RECD__CLUSTER__NODE_NAME".into(), "recd-0".into()));
    let mut node = spawn_with("recd-x", "s3cret", free_port(), &[], &borrowed(&env));
    let status = poll(30, || {
        let exited = node.child.try_wait().expect("try_wait");
        async move { exited }
    })
    .await;
    assert!(!status.success());
    logged("recd-x", "does not verify against cluster.tls.ca").await;
}
