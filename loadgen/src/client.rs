//! One `POST {url}/recommend` over a pooled HTTP/1.1 client, classified.

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
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

/// A pooled client bound to one node.
#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    uri: Uri,
    timeout: Duration,
}

impl Client {
    /// A client for `base` (http only, e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = base.trim_end_matches('/');
        if !base.starts_with("http://") {
            bail!("--url must start with http:// (got {base:?})");
        }
        let uri: Uri = format!("{base}/recommend")
            .parse()
            .with_context(|| format!("bad --url {base:?}"))?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let inner = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build(connector);
        Ok(Self {
            inner,
            uri,
            timeout,
        })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&self, body: String, lane: &str, budget_ms: Option<u64>) -> Outcome {
        let mut req = hyper::Request::post(self.uri.clone())
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
