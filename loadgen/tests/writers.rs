//! The writers of `--events-rps` / `--item-upserts-rps` against a stand-in node: rates
//! kept, every acknowledged write counted, and read-your-write checked and counted from
//! what the answers say.

use axum::routing::{post, put};
use axum::Router;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_sent_at_their_rates_and_visibility_is_read_from_the_answers() {
    let events = Arc::new(AtomicU64::new(0));
    let upserts = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let (e, u, r) = (
        Arc::clone(&events),
        Arc::clone(&upserts),
        Arc::clone(&reads),
    );
    let app = Router::new()
        .route(
            "/v1/events",
            post(move || {
                let e = Arc::clone(&e);
                async move {
                    e.fetch_add(1, Ordering::SeqCst);
                    r#"{"accepted":1,"applied":1,"duplicates":0}"#
                }
            }),
        )
        .route(
            "/v1/items/{id}",
            put(move || {
                let u = Arc::clone(&u);
                async move {
                    u.fetch_add(1, Ordering::SeqCst);
                    r#"{"stored":true}"#
                }
            }),
        )
        // every other answer still lists item 0, the only item clicked (one item)
        .route(
            "/recommend",
            post(move || {
                let r = Arc::clone(&r);
                async move {
                    match r.fetch_add(1, Ordering::SeqCst) % 2 {
                        0 => r#"{"items":[{"id":0,"score":1.0}]}"#,
                        _ => r#"{"items":[{"id":3,"score":1.0}]}"#,
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let report = recd_loadgen::writers::run(
        &format!("http://{addr}"),
        200.0,
        50.0,
        Duration::from_secs(1),
        7,
        (1000, 1),
    )
    .await;
    let sent = report.events.sent;
    assert!((150..=250).contains(&sent), "{sent} events in 1 s at 200/s");
    assert_eq!(report.events.ok, sent);
    assert_eq!(events.load(Ordering::SeqCst), sent);
    let up = report.item_upserts.sent;
    assert!((35..=65).contains(&up), "{up} upserts in 1 s at 50/s");
    assert_eq!(
        (report.item_upserts.ok, upserts.load(Ordering::SeqCst)),
        (up, up)
    );
    assert_eq!(report.visibility_checked, sent.div_ceil(10));
    assert_eq!(report.visibility_checked, reads.load(Ordering::SeqCst));
    // the odd answers omit item 0: those are the visible ones
    assert_eq!(report.visible_first_read, report.visibility_checked / 2);
}
