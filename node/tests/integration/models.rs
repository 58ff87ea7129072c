//! The model repository on a real node: an ONNX model written by the repository's own
//! tools (the teacher exported, a student distilled by scikit-learn) serves through
//! tract and answers as the native teacher does; a new version swaps in under load
//! with no failed request; versions that fail to load, have the wrong input width or
//! answer NaN are refused while the serving version goes on; and the two experiment
//! variants run different models, each answer naming the one that scored it.

use crate::common::{client, config, metric_sum, metrics_text, poll, recommend, small_data};
use recd_actors::data::Catalogue;
use recd_actors::features::profile::ProfileSource;
use recd_actors::items::Items;
use recd_actors::ranker::model::{Model, ScoreInput};
use recd_node::Node;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Runs `tools/models/<script>` with `args`; panics with its stderr on failure.
pub fn model_tool(script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/models")
        .join(script);
    let out = Command::new("python3").arg(&path).args(args).output();
    let out = out.expect("running python3");
    assert!(
        out.status.success(),
        "{script} failed (pip install -r tools/models/requirements.txt?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The catalogue's teacher as ONNX, at `repo/name/version`.
pub fn export_teacher(repo: &Path, name: &str, version: u32) {
    let out = repo.join(name).join(version.to_string());
    let data = small_data().to_str().unwrap();
    model_tool(
        "export.py",
        &["--data", data, "--out", out.to_str().unwrap()],
    );
}

/// A small student distilled from the teacher, at `repo/name/version`.
pub fn distil_student(repo: &Path, name: &str, version: u32) {
    let out = repo.join(name).join(version.to_string());
    let data = small_data().to_str().unwrap();
    let quick = [
        "--users",
        "200",
        "--held-out",
        "40",
        "--epochs",
        "8",
        "--hidden",
        "16",
    ];
    let mut args = vec!["--data", data, "--out", out.to_str().unwrap()];
    args.extend(quick);
    model_tool("distill.py", &args);
}

/// A node over a repository holding the exported teacher as `ranker@1` and a distilled
/// student as `student@1`, running the experiment `scenarios` (ab_scenarios YAML).
pub async fn teacher_and_student_node(scenarios: &str) -> (tempfile::TempDir, Node) {
    let repo = tempfile::tempdir().unwrap();
    export_teacher(repo.path(), "ranker", 1);
    distil_student(repo.path(), "student", 1);
    let ab = repo.path().join("ab.yaml");
    std::fs::write(&ab, scenarios).unwrap();
    let mut c = config(small_data());
    c.models.dir = Some(repo.path().to_path_buf());
    c.experiments.scenarios_file = Some(ab);
    (repo, Node::start(c).await.unwrap())
}

#[test]
fn the_onnx_teacher_scores_as_the_native_one() {
    let repo = tempfile::tempdir().unwrap();
    export_teacher(repo.path(), "ranker", 1);
    let cat = Arc::new(Catalogue::load(small_data()).unwrap());
    let native = Model::builtin("ranker", &cat).unwrap();
    let onnx = Model::load(&repo.path().join("ranker/1"), "ranker", 1, cat.schema).unwrap();
    assert_eq!((native.format(), onnx.format()), ("native", "onnx"));
    let source = ProfileSource::new(&cat);
    let profiles: Vec<_> = ["u1", "u2", "u3"].map(|u| source.profile(u)).into();
    let items = Items::new(Arc::clone(&cat));
    let ids: Vec<u64> = (0..200).collect();
    let inputs: Vec<ScoreInput<'_>> = (profiles.iter())
        .map(|p| ScoreInput {
            profile: p,
            candidates: &ids,
        })
        .collect();
    let a = native.score_batch(&items, &inputs).unwrap();
    let b = onnx.score_batch(&items, &inputs).unwrap();
    for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
        assert!((x - y).abs() <= 1e-4 * x.abs().max(1.0), "{x} vs {y}");
    }
    assert_eq!(a.iter().flatten().count(), 600);
}

async fn reload(c: &reqwest::Client, addr: std::net::SocketAddr) -> serde_json::Value {
    let r = c
        .post(format!("http://{addr}/admin/models/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.unwrap()
}

fn write_version(repo: &Path, name: &str, v: u32, yaml: &str, file: (&str, &[u8])) {
    let dir = repo.join(name).join(v.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file.0), file.1).unwrap();
    std::fs::write(dir.join("model.yaml"), yaml).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_swaps_in_under_load_and_bad_ones_are_refused() {
    let repo = tempfile::tempdir().unwrap();
    export_teacher(repo.path(), "ranker", 1);
    let mut c = config(small_data());
    c.models.dir = Some(repo.path().to_path_buf());
    c.models.poll_ms = 3_600_000; // only the admin call scans
    let node = Node::start(c).await.unwrap();
    let addr = node.http_addr;
    let http = client();
    let (status, body) = recommend(&http, addr, r#"{"user_id":"u1","topk":5}"#, &[]).await;
    assert_eq!((status, body["model"].as_str()), (200, Some("ranker@1")));

    // clients keep asking while the student becomes version 2
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<(u16, Option<String>)>::new()));
    let load: Vec<_> = (0..3)
        .map(|t| {
            let (stop, seen, http) = (Arc::clone(&stop), Arc::clone(&seen), http.clone());
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!(r#"{{"user_id":"u{}","topk":10}}"#, t * 1000 + i);
                    let (s, b) = recommend(&http, addr, &body, &[]).await;
                    seen.lock()
                        .unwrap()
                        .push((s, b["model"].as_str().map(str::to_owned)));
                    i += 1;
                }
            })
        })
        .collect();
    distil_student(repo.path(), "ranker", 2);
    let report = reload(&http, node.admin_addr.unwrap()).await;
    assert_eq!(
        report["loaded"],
        serde_json::json!(["ranker@2"]),
        "{report}"
    );
    poll(10, || {
        let seen = Arc::clone(&seen);
        async move {
            let s = seen.lock().unwrap();
            (s.iter()
                .rev()
                .take(20)
                .filter(|(_, m)| m.as_deref() == Some("ranker@2"))
                .count()
                == 20)
                .then_some(())
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let failed = seen.iter().filter(|(s, _)| *s != 200).count();
    let before = seen
        .iter()
        .filter(|(_, m)| m.as_deref() == Some("ranker@1"))
        .count();
    assert_eq!(failed, 0, "requests failed around the swap");
    assert!(
        before > 0,
        "no answer came from version 1 while the student trained"
    );

    // three broken versions: each refused, version 2 serves on
    let onnx = std::fs::read(repo.path().join("ranker/2/model.onnx")).unwrap();
    let narrow = "format: onnx\ninputs: [cross]\n"; // 64 wide; the graph takes 96
    write_version(repo.path(), "ranker", 3, narrow, ("model.onnx", &onnx));
    let any = "format: onnx\ninputs: [cross, user_feats, item_feats]\n";
    write_version(
        repo.path(),
        "ranker",
        4,
        any,
        ("model.onnx", b"not a protobuf"),
    );
    let native = "format: native\ninputs: [cross, user_feats, item_feats]\nhidden: [8]\n";
    let overflow: Vec<u8> = (0..(96 * 8 + 8 + 8 + 1))
        .flat_map(|i: i32| if i % 2 == 0 { 3e38f32 } else { -3e38f32 }.to_le_bytes())
        .collect();
    write_version(repo.path(), "ranker", 5, native, ("weights.f32", &overflow));
    let report = reload(&http, node.admin_addr.unwrap()).await;
    let refused: Vec<(String, String)> = (report["refused"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["model"].as_str().unwrap().into(),
                r["reason"].as_str().unwrap().into(),
            )
        })
        .collect();
    let reason = |m: &str| refused.iter().find(|(n, _)| n == m).map(|(_, r)| r.clone());
    assert!(
        reason("ranker@3").unwrap().contains("96 wide"),
        "{refused:?}"
    );
    assert!(reason("ranker@4").is_some(), "{refused:?}");
    assert!(
        reason("ranker@5").unwrap().contains("non-finite"),
        "{refused:?}"
    );
    assert_eq!(report["loaded"], serde_json::json!([]));
    let (status, body) = recommend(&http, addr, r#"{"user_id":"u1","topk":5}"#, &[]).await;
    assert_eq!((status, body["model"].as_str()), (200, Some("ranker@2")));
    let m = metrics_text(&http, addr).await;
    let refused = r#"outcome="refused""#;
    assert_eq!(metric_sum(&m, "recd_model_loads_total", &[refused]), 3.0);
    assert_eq!(
        metric_sum(&m, "recd_model_version", &[r#"model="ranker""#]),
        2.0
    );
    assert!(metric_sum(&m, "recd_model_rows_total", &[r#"model="ranker@2""#]) > 0.0);
    // unchanged files are not tried again
    let report = reload(&http, node.admin_addr.unwrap()).await;
    assert_eq!(report["refused"], serde_json::json!([]), "{report}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variant_b_runs_another_model_and_says_so() {
    let scenarios =
        "experiment:\n  name: teacher-vs-student\n  split_percent: 50\n  variants:\n    \
        - {name: A, model: ranker}\n    - {name: B, model: student@1, candidates: 100, ef: 150}\n";
    let (_repo, node) = teacher_and_student_node(scenarios).await;
    let (addr, http) = (node.http_addr, client());
    let body = r#"{"user_id":"u42","topk":10}"#;
    let (sa, a) = recommend(&http, addr, body, &[("x-variant", "A")]).await;
    let (sb, b) = recommend(&http, addr, body, &[("x-variant", "B")]).await;
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(
        (a["variant"].as_str(), a["model"].as_str()),
        (Some("A"), Some("ranker@1"))
    );
    assert_eq!(
        (b["variant"].as_str(), b["model"].as_str()),
        (Some("B"), Some("student@1"))
    );
    assert_ne!(
        a["items"], b["items"],
        "the student ranks otherwise than the teacher"
    );
    // unforced, users split between the two, and each variant's metrics count its own
    for i in 0..40 {
        let (s, _) = recommend(
            &http,
            addr,
            &format!(r#"{{"user_id":"u{i}","topk":10}}"#),
            &[],
        )
        .await;
        assert_eq!(s, 200);
    }
    let m = metrics_text(&http, addr).await;
    let rows = |model: &str| {
        metric_sum(
            &m,
            "recd_model_rows_total",
            &[&format!(r#"model="{model}""#)],
        )
    };
    assert!(rows("ranker@1") > 0.0 && rows("student@1") > 0.0);
    let count = |v: &str| {
        metric_sum(
            &m,
            "recd_variant_request_duration_seconds_count",
            &[&format!(r#"variant="{v}""#)],
        )
    };
    assert!(count("A") >= 1.0 && count("B") >= 1.0);
    assert_eq!(count("A") + count("B"), 42.0);
    // B re-ranks 100 candidates, A 200: the rows say what ran
    let per_request = |model: &str, n: f64| rows(model) / n;
    assert!(per_request("student@1", count("B")) <= 100.0);
    assert!(per_request("ranker@1", count("A")) > 100.0);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_variant_scores_with_both_models() {
    let scenarios = "experiment:\n  name: cascade\n  split_percent: 50\n  variants:\n    \
        - {name: A, model: ranker@1}\n    \
        - {name: B, model: ranker@1, cascade: {model: student@1, rerank: 30}}\n";
    let (_repo, node) = teacher_and_student_node(scenarios).await;
    let (addr, http) = (node.http_addr, client());
    let body = r#"{"user_id":"u9","topk":10}"#;
    let (_, a) = recommend(&http, addr, body, &[("x-variant", "A")]).await;
    let m0 = metrics_text(&http, addr).await;
    let (sb, b) = recommend(&http, addr, body, &[("x-variant", "B")]).await;
    assert_eq!(sb, 200);
    assert_eq!(b["model"].as_str(), Some("student@1>ranker@1"), "{b}");
    assert_eq!(b["items"].as_array().unwrap().len(), 10);
    // the teacher re-ranked the student's best 30 of the 200 candidates
    let m1 = metrics_text(&http, addr).await;
    let rows = |m: &str, model: &str| {
        metric_sum(
            m,
            "recd_model_rows_total",
            &[&format!(r#"model="{model}""#)],
        )
    };
    assert_eq!(rows(&m1, "student@1") - rows(&m0, "student@1"), 200.0);
    assert_eq!(rows(&m1, "ranker@1") - rows(&m0, "ranker@1"), 30.0);
    // what the cascade answers is the teacher's order of what it re-ranked
    let ids = |v: &serde_json::Value| -> Vec<u64> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_u64().unwrap())
            .collect()
    };
    let scores: Vec<f64> = (b["items"].as_array().unwrap().iter())
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    let shared = ids(&a).iter().filter(|id| ids(&b).contains(id)).count();
    assert!(
        shared >= 1,
        "the cascade shares none of the teacher's top 10"
    );
    node.shutdown().await;
}
