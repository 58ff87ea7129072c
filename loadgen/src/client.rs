//! One `POST {url}/recommend` over a pooled HTTP/1.1 client, classified; several URLs
//! are used in turn.

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

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer with this status.
    Status(u16),
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
            resp.into_body().collect().await.map_err(|_| ())?;
            Ok::<u16, ()>(status)
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(status)) => Outcome::Status(status),
            Ok(Err(())) => Outcome::Error,
            Err(_) => Outcome::Timeout,
        }
    }
}
