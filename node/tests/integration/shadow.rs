//! Shadow traffic on a real node: the distilled student shadows the teacher; a shadowed
//! request gets exactly the answer an unshadowed one gets; every shadowed request is
//! accounted for once (compared, shed or failed), and the comparison — overlap@k and
//! RBO — is exported and summarised by `GET /admin/experiments`.

use crate::common::{client, metric_sum, metrics_text, poll, recommend, WIDE_BUDGET};
use crate::models::teacher_and_student_node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shadow_measures_itself_and_never_touches_the_answer() {
    let scenarios = "experiment:\n  name: student-shadow\n  split_percent: 50\n  variants: [{name: A}, {name: B}]\n  \
        shadow: {fraction_percent: 0, variant: {name: S, model: student@1}}\n";
    let (_repo, node) = teacher_and_student_node(scenarios).await;
    let (addr, http) = (node.http_addr, client());
    let admin = node.admin_addr.unwrap();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!("http://{admin}{path}"))
                .send()
                .await
                .unwrap();
            r.json::<serde_json::Value>().await.unwrap()
        }
    };

    // the same request with and without a shadow: the same answer (wide budgets: this is
    // about the shadow, not deadlines)
    let wide = WIDE_BUDGET;
    let body = r#"{"user_id":"u77","topk":10}"#;
    let (s1, plain) = recommend(&http, addr, body, &[("x-variant", "A"), wide]).await;
    let shadowed = [("x-variant", "A"), ("x-shadow", "1"), wide];
    let (s2, with_shadow) = recommend(&http, addr, body, &shadowed).await;
    assert_eq!((s1, s2), (200, 200));
    for field in ["items", "variant", "model", "degraded", "coverage"] {
        assert_eq!(plain[field], with_shadow[field], "{field}");
    }
    assert_eq!(plain["model"].as_str(), Some("ranker@1"));
    let (bad, _) = recommend(&http, addr, body, &[("x-shadow", "2")]).await;
    assert_eq!(bad, 400);

    // one at a time there is spare capacity: each shadowed request is compared
    for i in 0..20 {
        let body = format!(r#"{{"user_id":"u{i}","topk":10}}"#);
        let (s, _) = recommend(&http, addr, &body, &[("x-shadow", "1"), wide]).await;
        assert_eq!(s, 200);
    }
    // then many at once: some may find no spare capacity and be shed
    let burst: Vec<_> = (0..60)
        .map(|i| {
            let http = http.clone();
            tokio::spawn(async move {
                let body = format!(r#"{{"user_id":"u{}","topk":10}}"#, 500 + i);
                recommend(&http, addr, &body, &[("x-shadow", "1"), wide])
                    .await
                    .0
            })
        })
        .collect();
    let mut answered = 21; // u77 above, and the 20
    for b in burst {
        answered += u64::from(b.await.unwrap() == 200);
    }
    let summary = poll(10, || async move {
        let e = get("/admin/experiments").await;
        let c = e["shadow"]["compared"].clone();
        let n = |k: &str| c[k].as_u64().unwrap_or(0);
        (n("runs") + n("shed") + n("failed") == answered).then_some(c)
    })
    .await;
    let runs = summary["runs"].as_u64().unwrap();
    assert!(runs >= 20, "{summary}");
    let (overlap, rbo) = (
        summary["mean_overlap_at_k"].as_f64().unwrap(),
        summary["mean_rbo"].as_f64().unwrap(),
    );
    assert!(
        (0.0..=1.0).contains(&overlap) && (0.0..=1.0).contains(&rbo),
        "{summary}"
    );
    assert!(
        overlap > 0.0,
        "the student shares some of the teacher's top 10: {summary}"
    );
    let m = metrics_text(&http, addr).await;
    assert_eq!(
        metric_sum(&m, "recd_shadow_runs_total", &[r#"outcome="ran""#]),
        runs as f64
    );
    let compared = (m.lines())
        .find_map(|l| l.strip_prefix("recd_shadow_overlap_count "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(compared, Some(runs));
    assert!(metric_sum(&m, "recd_model_rows_total", &[r#"model="student@1""#]) > 0.0);
    node.shutdown().await;
}
