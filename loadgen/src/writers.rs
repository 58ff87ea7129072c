//! Writes beside the read load (`--events-rps`, `--item-upserts-rps`): one click per
//! `POST /v1/events` and one `PUT /v1/items/{id}` at fixed rates, to measure what writes
//! do to read latency. Each write's latency and status are counted; for every tenth
//! acknowledged click the user is asked at once whether the clicked item is gone from
//! their answer (`visible_first_read`: read-your-write on the very next request).

use crate::stats::histogram;
use crate::workload::Rng as SplitMix;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use std::time::{Duration, Instant};

type Http = HyperClient<HttpConnector, Full<Bytes>>;

/// What the writers did.
#[derive(Debug, Default, Serialize)]
pub struct WriteReport {
    /// Events sent, acknowledged (200), p50/p99 ms.
    pub events: Counts,
    /// Item upserts sent, acknowledged, p50/p99 ms.
    pub item_upserts: Counts,
    /// Clicks checked right after their acknowledgement.
    pub visibility_checked: u64,
    /// Of those, the clicked item was already gone from the user's next answer.
    pub visible_first_read: u64,
}

/// One kind of write.
#[derive(Debug, Default, Serialize)]
pub struct Counts {
    /// Requests sent.
    pub sent: u64,
    /// Answered 200.
    pub ok: u64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
}

impl Counts {
    fn of(sent: u64, ok: u64, h: &Histogram<u64>) -> Self {
        Self {
            sent,
            ok,
            p50_ms: h.value_at_quantile(0.5) as f64 / 1e3,
            p99_ms: h.value_at_quantile(0.99) as f64 / 1e3,
        }
    }
}

/// Sends `events_rps` clicks and `upserts_rps` item upserts per second to `base` for
/// `duration`; users `u0..users`, items `0..items`, seeded.
pub async fn run(
    base: &str,
    events_rps: f64,
    upserts_rps: f64,
    duration: Duration,
    seed: u64,
    (users, items): (u64, u64),
) -> WriteReport {
    let http: Http = HyperClient::builder(TokioExecutor::new()).build(HttpConnector::new());
    let base = base
        .split(',')
        .next()
        .unwrap_or("")
        .trim_end_matches('/')
        .to_owned();
    let events = tokio::spawn(clicks(
        http.clone(),
        base.clone(),
        events_rps,
        duration,
        seed,
        (users, items),
    ));
    let upserts = tokio::spawn(item_upserts(http, base, upserts_rps, duration, seed));
    let mut report = events.await.unwrap_or_default();
    report.item_upserts = upserts.await.unwrap_or_default();
    report
}

async fn send(
    http: &Http,
    method: &str,
    uri: String,
    body: String,
) -> Option<(u16, Bytes, Duration)> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    let started = Instant::now();
    let exchange = async {
        let resp = http.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some((status, body, started.elapsed()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

async fn clicks(
    http: Http,
    base: String,
    rps: f64,
    duration: Duration,
    seed: u64,
    (users, items): (u64, u64),
) -> WriteReport {
    let mut report = WriteReport::default();
    if rps <= 0.0 {
        return report;
    }
    let mut rng = SplitMix::new(seed ^ 0xe7e7);
    let (mut h, mut sent, mut ok) = (histogram(), 0, 0);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    let end = Instant::now() + duration;
    let mut checks = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let (user, item) = (rng.next_u64() % users.max(1), rng.next_u64() % items.max(1));
        let body = format!(
            r#"{{"events":[{{"event_id":"lg-{seed}-{sent}","user_id":"u{user}","item_id":{item},"type":"click"}}]}}"#
        );
        let (http, uri, check) = (http.clone(), format!("{base}/v1/events"), sent % 10 == 0);
        let recommend = format!("{base}/recommend");
        sent += 1;
        checks.spawn(async move {
            let r = send(&http, "POST", uri, body).await;
            let acked = matches!(r, Some((200, _, _)));
            let visible = match (acked && check, &r) {
                (true, _) => {
                    let body = format!(r#"{{"user_id":"u{user}","topk":200}}"#);
                    let answer = send(&http, "POST", recommend, body).await;
                    Some(answer.is_some_and(|(s, b, _)| s == 200 && !mentions(&b, item)))
                }
                _ => None,
            };
            (r.map(|(s, _, d)| (s, d)), visible)
        });
        while let Some(Ok((r, visible))) = checks.try_join_next() {
            tally(&mut h, &mut ok, r);
            if let Some(v) = visible {
                report.visibility_checked += 1;
                report.visible_first_read += u64::from(v);
            }
        }
    }
    while let Some(Ok((r, visible))) = checks.join_next().await {
        tally(&mut h, &mut ok, r);
        if let Some(v) = visible {
            report.visibility_checked += 1;
            report.visible_first_read += u64::from(v);
        }
    }
    report.events = Counts::of(sent, ok, &h);
    report
}

fn tally(h: &mut Histogram<u64>, ok: &mut u64, r: Option<(u16, Duration)>) {
    if let Some((status, took)) = r {
        let _ = h.record(took.as_micros().max(1) as u64);
        *ok += u64::from(status == 200);
    }
}

/// Whether a `/recommend` body lists `item`.
fn mentions(body: &[u8], item: u64) -> bool {
    #[derive(serde::Deserialize)]
    struct Item {
        id: u64,
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        items: Vec<Item>,
    }
    serde_json::from_slice::<Answer>(body).map_or(true, |a| a.items.iter().any(|i| i.id == item))
}

async fn item_upserts(http: Http, base: String, rps: f64, duration: Duration, seed: u64) -> Counts {
    if rps <= 0.0 {
        return Counts::default();
    }
    let mut rng = SplitMix::new(seed ^ 0x17e5);
    let (mut h, mut sent, mut ok) = (histogram(), 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rps));
    let end = Instant::now() + duration;
    let mut pending = tokio::task::JoinSet::new();
    while Instant::now() < end {
        tick.tick().await;
        let emb: Vec<String> = (0..64)
            .map(|_| format!("{:.4}", rng.next_f64() * 2.0 - 1.0))
            .collect();
        let body = format!(r#"{{"embedding":[{}]}}"#, emb.join(","));
        // new ids past the catalogue, reused in a ring of 1 000: adds and replacements
        let uri = format!("{base}/v1/items/{}", 500_000_000 + sent % 1000);
        let http = http.clone();
        sent += 1;
        pending.spawn(async move { send(&http, "PUT", uri, body).await.map(|(s, _, d)| (s, d)) });
        while let Some(Ok(r)) = pending.try_join_next() {
            tally(&mut h, &mut ok, r);
        }
    }
    while let Some(Ok(r)) = pending.join_next().await {
        tally(&mut h, &mut ok, r);
    }
    Counts::of(sent, ok, &h)
}
