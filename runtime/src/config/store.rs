//! `features.store`: where profiles are kept durably, and the limits of writes.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The feature store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// One redb file per feature shard under `node.data_dir/store` (single node, or a
    /// cluster with one replica per shard).
    Embedded,
    /// Redis (or a Redis-compatible server) shared by every replica of a shard
    /// (`features.store.redis`).
    Redis,
    /// No store: profiles are derived from the id (the demo users) and writes are
    /// refused with 501. For replicated clusters until a shared store backs them.
    None,
}

/// The feature store and its writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Backend.
    pub backend: StoreBackend,
    /// Folder of the embedded store's files (default `<node.data_dir>/store`).
    pub dir: Option<PathBuf>,
    /// Length of each user's ring of recent items (never recommended back), 1..=64.
    pub recent_items: usize,
    /// How long an event id is remembered: a retry within it is applied once.
    pub dedupe_window_secs: u64,
    /// Most events one `POST /v1/events` may carry (1..=4096).
    pub max_events_per_call: usize,
    /// How long a write may wait for its shard's commit before it is answered 504.
    pub write_timeout_ms: u64,
    /// Largest body of a write request.
    pub max_body_bytes: usize,
    /// Embedded store: how long a commit gathers writes before its fsync (µs; 0: only
    /// what is queued). More writes per fsync, that much more write latency.
    pub commit_window_us: u64,
    /// The shared store (backend `redis`).
    pub redis: RedisConfig,
}

/// `features.store.redis`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (a password belongs in the environment:
    /// `RECD__FEATURES__STORE__REDIS__URL`).
    pub url: String,
    /// Key prefix, so deployments can share a server.
    pub prefix: String,
    /// Timeout of every Redis call.
    pub timeout_ms: u64,
    /// Refuse to start unless the server fsyncs every write before replying
    /// (`appendonly yes`, `appendfsync always`).
    pub require_fsync: bool,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "recd".into(),
            timeout_ms: 200,
            require_fsync: true,
        }
    }
}

impl std::fmt::Debug for RedisConfig {
    /// The url without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match (self.url.split_once("://"), self.url.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://<redacted>{}", &self.url[at..]),
            _ => self.url.clone(),
        };
        f.debug_struct("RedisConfig")
            .field("url", &url)
            .field("prefix", &self.prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("require_fsync", &self.require_fsync)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            backend: StoreBackend::Embedded,
            dir: None,
            recent_items: 16,
            dedupe_window_secs: 86_400,
            max_events_per_call: 1000,
            write_timeout_ms: 2000,
            max_body_bytes: 1 << 20,
            commit_window_us: 0,
            redis: RedisConfig::default(),
        }
    }
}

impl StoreConfig {
    /// Checks the bounds; `replicated`: the cluster keeps more than one replica of a
    /// shard (an embedded store would then diverge between them).
    pub(super) fn validate(&self, replicated: bool) -> anyhow::Result<()> {
        if !(1..=64).contains(&self.recent_items) {
            bail!("features.store.recent_items must be in 1..=64");
        }
        if !(1..=4096).contains(&self.max_events_per_call) {
            bail!("features.store.max_events_per_call must be in 1..=4096");
        }
        if self.write_timeout_ms == 0 || self.dedupe_window_secs == 0 || self.max_body_bytes == 0 {
            bail!("features.store: write_timeout_ms, dedupe_window_secs and max_body_bytes must be > 0");
        }
        if self.backend == StoreBackend::Redis
            && (self.redis.timeout_ms == 0 || !self.redis.url.starts_with("redis://"))
        {
            bail!("features.store.redis: url must be redis://… and timeout_ms > 0");
        }
        if replicated && self.backend == StoreBackend::Embedded {
            bail!(
                "features.store.backend: embedded cannot back a replicated cluster \
                 (cluster.replicas > 1): each replica would keep its own truth. recd does \
                 not replicate stores itself; use one replica per shard or backend: redis"
            );
        }
        Ok(())
    }
}
