//! The config structs. Every struct denies unknown fields and has defaults that run a
//! single node on the embedded data set; `Config::validate` names the bad field.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub use super::access::{AdminConfig, Scope, TenantConfig};
pub use super::cluster::{is_placeholder, ClusterConfig, NodeSpec, Role, TlsFiles};
pub use super::models::{valid_model_name, ModelsConfig};

/// The whole node configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where this node listens and keeps its files.
    pub node: NodeConfig,
    /// The embedded default data set.
    pub data: DataConfig,
    /// HTTP ingress limits and admission.
    pub ingress: IngressConfig,
    /// Lanes, batching and in-flight bounds.
    pub gateway: GatewayConfig,
    /// Feature shards and their profile cache.
    pub features: FeaturesConfig,
    /// Index shards and the ANN search.
    pub index: IndexConfig,
    /// The re-ranking model pool.
    pub ranker: RankerConfig,
    /// The model repository the rankers serve from.
    pub models: ModelsConfig,
    /// The CPU pool for ANN search and scoring.
    pub compute: ComputeConfig,
    /// Restart policy of every supervised pool.
    pub supervision: SupervisionConfig,
    /// A/B experiments.
    pub experiments: ExperimentsConfig,
    /// The admin listener and its token.
    pub admin: AdminConfig,
    /// API keys, their tenants, scopes and token buckets (none: the public port is open).
    pub tenants: Vec<TenantConfig>,
    /// Cluster membership (off unless `cluster.listen` is set).
    pub cluster: ClusterConfig,
}

/// Node identity and listeners.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Folder with the catalogue files and index snapshots.
    pub data_dir: PathBuf,
    /// HTTP listen address (`127.0.0.1:0` picks a free port).
    pub http_listen: String,
    /// Log format: `json` or `text`.
    pub log_format: String,
    /// Longest a drain (SIGTERM) waits for requests in flight, here and from peers.
    pub drain_grace_ms: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            http_listen: "127.0.0.1:8080".into(),
            log_format: "json".into(),
            drain_grace_ms: 10_000,
        }
    }
}

/// The embedded default data set written by `gen-data` when `data_dir` is empty.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Generate the synthetic catalogue if `data_dir` has none.
    pub generate_if_missing: bool,
    /// Items in the generated catalogue.
    pub items: usize,
    /// RNG seed of the generated catalogue.
    pub seed: u64,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            generate_if_missing: true,
            items: 200_000,
            seed: 20240611,
        }
    }
}

/// HTTP ingress: body and field limits, admission.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngressConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Largest accepted `topk`.
    pub max_topk: u32,
    /// Longest accepted `user_id` in bytes.
    pub max_user_id_len: usize,
    /// Global token bucket rate (requests/s); 0 disables admission control.
    pub rate_limit_rps: u32,
    /// Token bucket burst size.
    pub rate_limit_burst: u32,
    /// Share of requests written to the access log (0..=1, by trace id so every node
    /// picks the same traces); a sampled `traceparent` and every 5xx are always logged.
    pub access_log_sample: f64,
}

impl Default for IngressConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_topk: 200,
            max_user_id_len: 128,
            rate_limit_rps: 0,
            rate_limit_burst: 100,
            access_log_sample: 1.0,
        }
    }
}

/// One priority lane.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    /// Lane name as sent in `X-Priority`.
    pub name: String,
    /// Weight of this lane in the fair share of requests served (turns between lanes).
    pub weight: u32,
    /// Queue bound of this lane.
    pub capacity: usize,
    /// Latency budget when the request sets no `X-Deadline-Ms`.
    pub deadline_ms: u64,
    /// Token bucket of this lane (requests/s); 0 = no per-lane limit.
    #[serde(default)]
    pub rate_limit_rps: u32,
    /// Burst of the lane's token bucket (0 = one second's worth).
    #[serde(default)]
    pub rate_limit_burst: u32,
    /// SLO latency target in ms (default: the lane's deadline).
    #[serde(default)]
    pub slo_latency_ms: Option<u64>,
    /// SLO availability target (fraction of requests answered 2xx within the target).
    #[serde(default = "default_availability")]
    pub slo_availability: f64,
    /// Oldest cached profile this lane accepts in ms (default: the cache TTL).
    #[serde(default)]
    pub profile_max_age_ms: Option<u64>,
}

fn default_availability() -> f64 {
    0.999
}

/// How the gateway closes micro-batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchingMode {
    /// Close when the earliest deadline minus the predicted batch time runs short.
    Deadline,
    /// Close on size or on the oldest request's age only (for comparison).
    Fixed,
}

/// Gateway: lanes (highest priority first), batching and in-flight bound.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Lanes, highest priority first; shedding starts at the last.
    pub lanes: Vec<LaneConfig>,
    /// Lane of requests without `X-Priority`.
    pub default_lane: String,
    /// Bound on all queued requests across lanes.
    pub max_queued: usize,
    /// Largest micro-batch.
    pub max_batch: usize,
    /// `deadline` (default) or `fixed` batch closing.
    pub batching: BatchingMode,
    /// Deadline batching: margin kept between predicted completion and the earliest
    /// deadline of a batch.
    pub deadline_margin_us: u64,
    /// Longest time the oldest queued request waits for a batch to fill (the only
    /// timer of fixed batching, a cap for deadline batching).
    pub max_wait_us: u64,
    /// Dispatch at once when no batch is in flight (no waiting at low load; batches
    /// still form whenever the pipeline is busy).
    pub eager_when_idle: bool,
    /// Pipeline workers = bound on batches in flight.
    pub pipeline_workers: usize,
    /// Largest `X-Deadline-Ms` accepted.
    pub max_deadline_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        let lane = |name: &str, weight, capacity, deadline_ms| LaneConfig {
            name: name.into(),
            weight,
            capacity,
            deadline_ms,
            rate_limit_rps: 0,
            rate_limit_burst: 0,
            slo_latency_ms: None,
            slo_availability: default_availability(),
            profile_max_age_ms: None,
        };
        Self {
            lanes: vec![
                lane("critical", 8, 256, 100),
                lane("default", 4, 1024, 200),
                lane("background", 1, 1024, 500),
            ],
            default_lane: "default".into(),
            max_queued: 2048,
            max_batch: 32,
            batching: BatchingMode::Deadline,
            deadline_margin_us: 1000,
            max_wait_us: 2000,
            eager_when_idle: true,
            pipeline_workers: 4,
            max_deadline_ms: 10_000,
        }
    }
}

/// Feature shards over the profile source.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturesConfig {
    /// Number of feature shards (users split by FNV-1a of the id).
    pub shards: usize,
    /// Cached profiles older than this are derived again.
    pub cache_ttl_secs: u64,
    /// Cache bound per shard.
    pub cache_max_entries: usize,
    /// Per-call timeout; on expiry the default profile is used.
    pub timeout_ms: u64,
    /// The durable store behind the cache, and write limits.
    pub store: super::StoreConfig,
}

impl Default for FeaturesConfig {
    fn default() -> Self {
        Self {
            shards: 4,
            cache_ttl_secs: 300,
            cache_max_entries: 100_000,
            timeout_ms: 20,
            store: super::StoreConfig::default(),
        }
    }
}

/// Scalar kind stored in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScalarKindConfig {
    /// 32-bit floats.
    F32,
    /// Half precision (default: same recall, less CPU and memory).
    F16,
    /// 8-bit integers, quantised by recd at scale 127/0.75.
    I8,
}

/// Which index answers a shard's searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexBackend {
    /// usearch HNSW (approximate; snapshots, background rebuilds).
    Hnsw,
    /// Exact inner product over every item, one SGEMM per block.
    Flat,
}

/// Distance metric of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricConfig {
    /// Inner product (the workload's metric).
    Ip,
    /// Cosine similarity.
    Cos,
}

/// Index shards and ANN parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Number of index shards (items split by id modulo shards).
    pub shards: usize,
    /// Distance metric.
    pub metric: MetricConfig,
    /// Stored scalar kind.
    pub scalar: ScalarKindConfig,
    /// HNSW connectivity (M).
    pub connectivity: usize,
    /// HNSW expansion at build time.
    pub expansion_add: usize,
    /// HNSW expansion at search time (ef); raised to k' when smaller.
    pub expansion_search: usize,
    /// Candidates gathered for re-ranking.
    pub candidates: usize,
    /// Each shard is asked for ceil(factor · candidates / shards) items.
    pub per_shard_factor: f32,
    /// The ANN backend: `hnsw` (usearch) or `flat` (exact search over a GEMM; recall
    /// 1.0, cost linear in the items — small catalogues and ground truth).
    pub backend: IndexBackend,
    /// Threads that build a shard's index when no snapshot exists; 0 means one per core.
    /// 1 builds the same graph every time (insertion order and level draws are fixed), so
    /// replicas of a shard built on different nodes answer identically; more threads
    /// build faster but every build is a slightly different graph.
    pub build_threads: usize,
    /// Per-call timeout; late shards are left out and `coverage` drops.
    pub timeout_ms: u64,
}

/// The ranker pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RankerConfig {
    /// Ranker actors.
    pub workers: usize,
    /// Per-call timeout; on expiry the ANN order is returned.
    pub timeout_ms: u64,
    /// Degradation ladder: when the remaining budget cannot pay for re-ranking every
    /// candidate, only the best this many (by ANN order) are re-ranked.
    pub truncate_to: usize,
}

impl Default for RankerConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            timeout_ms: 50,
            truncate_to: 50,
        }
    }
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            shards: 2,
            metric: MetricConfig::Ip,
            scalar: ScalarKindConfig::F16,
            connectivity: 16,
            expansion_add: 128,
            expansion_search: 100,
            candidates: 200,
            per_shard_factor: 1.0,
            backend: IndexBackend::Hnsw,
            build_threads: 0,
            timeout_ms: 50,
        }
    }
}

/// CPU pool for search and scoring.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Threads; 0 means one per core.
    pub threads: usize,
}

/// Restart policy of supervised pools.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SupervisionConfig {
    /// Restarts allowed per window before the supervisor gives up on a slot.
    pub max_restarts: u32,
    /// Window of the restart intensity.
    pub window_secs: u64,
    /// Delay before a restart, doubled per consecutive failure of the slot.
    pub backoff_ms: u64,
}

impl Default for SupervisionConfig {
    fn default() -> Self {
        Self {
            max_restarts: 20,
            window_secs: 60,
            backoff_ms: 10,
        }
    }
}

/// Where A/B experiments are defined.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExperimentsConfig {
    /// Path to `ab_scenarios.yaml`; none means the workload's 50/50 split without salt.
    pub scenarios_file: Option<PathBuf>,
}

impl Config {
    /// Checks cross-field rules; the error names the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.models.validate()?;
        let g = &self.gateway;
        if g.lanes.is_empty() {
            bail!("gateway.lanes: at least one lane is required");
        }
        for (i, lane) in g.lanes.iter().enumerate() {
            if lane.name.is_empty() || g.lanes[..i].iter().any(|l| l.name == lane.name) {
                bail!(
                    "gateway.lanes[{i}].name: empty or duplicate {:?}",
                    lane.name
                );
            }
            if lane.weight == 0 || lane.capacity == 0 || lane.deadline_ms == 0 {
                bail!("gateway.lanes[{i}]: weight, capacity and deadline_ms must be > 0");
            }
            if !(lane.slo_availability > 0.0 && lane.slo_availability < 1.0) {
                bail!("gateway.lanes[{i}].slo_availability must be in (0, 1)");
            }
        }
        if !g.lanes.iter().any(|l| l.name == g.default_lane) {
            bail!("gateway.default_lane: {:?} is not a lane", g.default_lane);
        }
        positive("gateway.max_batch", g.max_batch)?;
        positive("gateway.max_queued", g.max_queued)?;
        positive("gateway.pipeline_workers", g.pipeline_workers)?;
        positive("features.shards", self.features.shards)?;
        positive(
            "features.cache_max_entries",
            self.features.cache_max_entries,
        )?;
        positive("index.shards", self.index.shards)?;
        positive("index.connectivity", self.index.connectivity)?;
        positive("index.candidates", self.index.candidates)?;
        positive("ranker.workers", self.ranker.workers)?;
        if self.compute.threads > 256 {
            bail!("compute.threads must be at most 256");
        }
        positive("ranker.truncate_to", self.ranker.truncate_to)?;
        positive("data.items", self.data.items)?;
        if self.index.candidates < self.ingress.max_topk as usize {
            bail!("index.candidates must be >= ingress.max_topk");
        }
        if self.index.per_shard_factor.is_nan() || self.index.per_shard_factor < 1.0 {
            bail!("index.per_shard_factor must be >= 1.0");
        }
        if !(0.0..=1.0).contains(&self.ingress.access_log_sample) {
            bail!("ingress.access_log_sample must be in 0..=1");
        }
        if self.ingress.max_topk == 0 || self.ingress.max_user_id_len == 0 {
            bail!("ingress.max_topk and ingress.max_user_id_len must be > 0");
        }
        if !matches!(self.node.log_format.as_str(), "json" | "text") {
            bail!("node.log_format: expected json or text");
        }
        self.cluster.validate()?;
        self.admin.validate()?;
        super::access::validate_tenants(&self.tenants)?;
        let replicated = self.cluster.listen.is_some() && self.cluster.replicas > 1;
        self.features.store.validate(replicated)?;
        self.node
            .http_listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| anyhow::anyhow!("node.http_listen: {e}"))?;
        Ok(())
    }

    /// Threads that build an index shard: `index.build_threads`, or one per core for 0.
    pub fn index_build_threads(&self) -> usize {
        match self.index.build_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        }
    }

    /// Items each index shard is asked for: ceil(factor · candidates / shards), at most
    /// `candidates`.
    pub fn per_shard_k(&self) -> usize {
        let s = self.index.shards as f32;
        let k = (self.index.per_shard_factor * self.index.candidates as f32 / s).ceil() as usize;
        k.clamp(1, self.index.candidates)
    }
}

fn positive(field: &str, v: usize) -> anyhow::Result<()> {
    if v == 0 {
        bail!("{field} must be > 0");
    }
    Ok(())
}
