//! One `POST {url}/recommend` over a pooled HTTP/1.1 client, classified — a 2xx answer
//! by what its body says it degraded (`degraded`, `coverage`); several URLs are used in
//! turn.

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The rungs of the degradation ladder an answer says it took (a set, as bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rungs(u8);

impl Rungs {
    /// Every rung recd names, in bit order; `partial` is `coverage` < 1 (recd names that
    /// `candidates` too: the two are one cause, counted from both sides of the answer),
    /// `unreadable` a 2xx body that is not a recommendation, `other` a rung this generator
    /// does not know.
    pub const NAMES: [&'static str; 7] = [
        "features",
        "candidates",
        "rank_truncated",
        "ranker",
        "partial",
        "unreadable",
        "other",
    ];

    /// True for an answer that took no rung: what goodput counts.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the rungs taken.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        (0..Self::NAMES.len())
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(|i| Self::NAMES[i])
    }

    fn with(self, name: &str) -> Self {
        let i = Self::NAMES
            .iter()
            .position(|n| *n == name)
            .unwrap_or(Self::NAMES.len() - 1);
        Self(self.0 | 1 << i)
    }

    /// What a 2xx body of `/recommend` says about itself.
    pub fn of_body(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Said {
            #[serde(default)]
            degraded: Vec<String>,
            #[serde(default = "whole")]
            coverage: f64,
            items: serde::de::IgnoredAny,
        }
        fn whole() -> f64 {
            1.0
        }
        let Ok(said) = serde_json::from_slice::<Said>(body) else {
            return Self::default().with("unreadable");
        };
        let _ = said.items;
        let mut r = (said.degraded.iter()).fold(Self::default(), |r, d| r.with(d));
        if said.coverage < 1.0 {
            r = r.with("partial");
        }
        r
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status; for a 2xx, the rungs it took.
    Status(u16, Rungs),
    /// No answer within the client timeout.
    Timeout,
    /// Connection or protocol error.
    Error,
    /// Dropped on purpose (`--cancel-fraction`).
    Cancelled,
}

/// A pooled client bound to one node, or round-robin over several.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    uris: Arc<[Uri]>,
    next: Arc<AtomicUsize>,
    timeout: Duration,
}

impl Client {
    /// A client for `bases`: comma-separated base URLs (http only, e.g.
    /// `http://127.0.0.1:8080`).
    pub fn new(bases: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut uris = Vec::new();
        for base in bases.split(',').map(|b| b.trim().trim_end_matches('/')) {
            if !base.starts_with("http://") {
                bail!("--url must start with http:// (got {base:?})");
            }
            let uri: Uri = format!("{base}/recommend")
                .parse()
                .with_context(|| format!("bad --url {base:?}"))?;
            uris.push(uri);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build(connector);
        Ok(Self {
            inner,
            uris: uris.into(),
            next: Arc::new(AtomicUsize::new(0)),
            timeout,
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&self, body: String, lane: &str, budget_ms: Option<u64>) -> Outcome {
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.uris.len();
        let mut req = hyper::Request::post(self.uris[turn].clone())
            .header("content-type", "application/json")
            .header("x-priority", lane);
        if let Some(ms) = budget_ms {
            req = req.header("x-deadline-ms", ms);
        }
        let Ok(req) = req.body(Full::new(Bytes::from(body))) else {
            return Outcome::Error;
        };
        let exchange = async {
            let resp = self.inner.request(req).await.map_err(|_| ())?;
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.map_err(|_| ())?.to_bytes();
            let rungs = match status {
                200..=299 => Rungs::of_body(&body),
                _ => Rungs::default(),
            };
            Ok::<_, ()>(Outcome::Status(status, rungs))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(())) => Outcome::Error,
            Err(_) => Outcome::Timeout,
        }
    }
}
