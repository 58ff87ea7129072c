//! What every HTTP handler shares ([`IngressState`], [`Serving`]) and how a refusal
//! renders itself ([`Refusal`]: a JSON `ErrorBody` with the status of its `ErrorCode`).

use crate::experiments::shadow::ShadowStats;
use crate::experiments::AbScenarios;
use crate::gateway::GatewayMessage;
use crate::item_log::ItemWrites;
use crate::items::Items;
use crate::pipeline::PipelineMessage;
use crate::ranker::loader::ModelLoader;
use crate::remote::replicas::NodeReplicas;
use crate::remote::router::Router;
use crate::stage::local::LocalStages;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::admission::Admission;
use recd_runtime::api::ErrorBody;
use recd_runtime::cluster::Membership;
use recd_runtime::config::Role;
use recd_runtime::config::{Config, GatewayConfig, IngressConfig, StoreConfig};
use recd_runtime::lanes::LaneSaturation;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::placement::Placement;
use recd_runtime::pool::root::Health;
use recd_runtime::pool::PoolSlots;
use recd_runtime::slo::{SloTarget, SloTracker};
use recd_runtime::{ErrorCode, RecdError};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What the ingress needs once the node is ready to serve.
pub struct Serving {
    /// Whether this node runs the ingress role (takes `/recommend`).
    pub takes_requests: bool,
    /// The gateway requests go to (a supervised pool of one; empty without the role).
    pub gateway: Arc<PoolSlots<GatewayMessage>>,
    /// The pipeline workers (readiness needs at least one).
    pub pipeline: Arc<PoolSlots<PipelineMessage>>,
    /// This node's stage actors (`/readyz` checks its index shards, `/admin/fault` targets them).
    pub local: Arc<LocalStages>,
    /// Where writes go (with the ingress role).
    pub router: Option<Arc<Router>>,
    /// The live items (events and recent items must name one).
    pub items: Arc<Items>,
    /// Where item writes are made durable (`None`: item writes are off here).
    pub item_writes: Option<Arc<ItemWrites>>,
    /// The model loader (`None`: this node runs no rankers).
    pub models: Option<ModelLoader>,
}

/// Shared state of the HTTP handlers.
pub struct IngressState {
    /// Limits.
    pub config: IngressConfig,
    /// Write limits.
    pub store: StoreConfig,
    /// One item write at a time (store, overlay and index shard see them in one order).
    pub item_writes: tokio::sync::Mutex<()>,
    /// Lanes and deadlines.
    pub gateway_config: GatewayConfig,
    /// A/B assignment.
    pub ab: AbScenarios,
    /// The comparison of the experiment's shadow variant with the primaries (`None`:
    /// the experiment has no shadow); the pipeline records, `/admin/experiments` reads.
    pub shadow: Option<Arc<ShadowStats>>,
    /// Global token bucket.
    pub admission: Admission,
    /// Per-lane token buckets.
    pub lane_admission: Vec<Admission>,
    /// Per-lane SLO burn rates.
    pub slo: SloTracker,
    /// Lanes the gateway reports saturated: refused before the body is read.
    pub saturation: Arc<LaneSaturation>,
    /// Members and placement for `/cluster`.
    pub cluster: ClusterView,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Set when the node is ready.
    pub serving: OnceLock<Serving>,
    /// Whether `/admin/fault` is enabled.
    pub fault_injection: bool,
    /// The admin port's bearer token (empty: no admin port).
    pub admin_token: String,
    /// API keys and their tenants' buckets.
    pub tenants: super::tenants::Tenants,
    /// Set at shutdown: `/readyz` and `/recommend` answer 503 from then on.
    pub draining: AtomicBool,
    /// Requests being answered on the public port (the drain waits for them).
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// What the root supervisor saw (`/healthz` fails once a supervised child died).
    pub health: Arc<Health>,
    /// The ingress actor's pool of one (`/admin/fault` targets it too).
    pub ingress: Arc<PoolSlots<super::IngressMessage>>,
    id_prefix: u32,
    next_id: AtomicU64,
}

impl IngressState {
    /// Handler state; `serving` is set later by the node.
    pub fn new(
        node: &Config,
        (ab, shadow): (AbScenarios, Option<Arc<ShadowStats>>),
        metrics: Arc<Metrics>,
        saturation: Arc<LaneSaturation>,
        cluster: ClusterView,
        health: Arc<Health>,
    ) -> anyhow::Result<Self> {
        let (config, gateway_config) = (node.ingress.clone(), node.gateway.clone());
        let admission = Admission::new(config.rate_limit_rps, config.rate_limit_burst);
        let lane_admission = gateway_config
            .lanes
            .iter()
            .map(|l| Admission::new(l.rate_limit_rps, l.rate_limit_burst))
            .collect();
        let slo = SloTracker::new(
            gateway_config
                .lanes
                .iter()
                .map(|l| SloTarget {
                    latency: Duration::from_millis(l.slo_latency_ms.unwrap_or(l.deadline_ms)),
                    availability: l.slo_availability,
                })
                .collect(),
        );
        let id_prefix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        let tenants = super::tenants::Tenants::new(&node.tenants, &metrics)?;
        Ok(Self {
            config,
            store: node.features.store.clone(),
            item_writes: tokio::sync::Mutex::new(()),
            gateway_config,
            ab,
            shadow,
            admission,
            lane_admission,
            slo,
            saturation,
            cluster,
            metrics,
            serving: OnceLock::new(),
            fault_injection: node.admin.fault_injection,
            admin_token: node.admin.token.clone(),
            tenants,
            health,
            ingress: PoolSlots::new(1),
            draining: AtomicBool::new(false),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            id_prefix,
            next_id: AtomicU64::new(0),
        })
    }

    /// Why `id` is refused as a user id, if it is: empty, longer than
    /// `ingress.max_user_id_len`, or not printable (every route that names a user).
    pub(super) fn check_user_id(&self, id: &str) -> Result<(), RecdError> {
        let max = self.config.max_user_id_len;
        if id.is_empty() || id.len() > max {
            return Err(RecdError::bad_request(format!(
                "user_id must be 1..={max} bytes"
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(RecdError::bad_request("user_id must be printable"));
        }
        Ok(())
    }

    /// How long a write may take (`features.store.write_timeout_ms`).
    pub(super) fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.store.write_timeout_ms)
    }

    /// The priority of a write's stage call: the top lane, due at the write timeout,
    /// in the trace of the request being served.
    pub(super) fn write_priority(&self, trace: u128) -> recd_runtime::compute::Priority {
        recd_runtime::compute::Priority {
            deadline: recd_runtime::clock::now() + self.write_timeout(),
            lane: 0,
            trace,
        }
    }

    pub(super) fn request_id(&self) -> String {
        format!(
            "{:08x}-{:010x}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// What `GET /cluster` shows: live members, the placement, who serves each shard now.
pub struct ClusterView {
    /// Live members (this node alone when it runs without a cluster).
    pub membership: Arc<Membership>,
    /// Peer health and load.
    pub peers: Arc<Peers>,
    /// Shard → nodes, from the roster.
    pub placement: Placement,
    /// Live replicas per shard.
    pub replicas: Arc<NodeReplicas>,
    /// This node's roles.
    pub roles: Vec<Role>,
    /// Latched once every shard had a live replica (readiness of an ingress node).
    pub covered: AtomicBool,
}

impl ClusterView {
    /// Live replicas per shard, per kind.
    pub(super) fn live(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (kind, sets) in &self.placement.map {
            let live: Vec<Vec<String>> = (0..sets.len())
                .map(|s| self.replicas.live_replicas(*kind, s))
                .collect();
            out.insert(kind.as_str().to_owned(), serde_json::json!(live));
        }
        serde_json::Value::Object(out)
    }

    /// The first shard with no live replica, if any.
    pub(super) fn uncovered(&self) -> Option<String> {
        self.placement.map.iter().find_map(|(kind, sets)| {
            (0..sets.len())
                .find(|&s| self.replicas.live_replicas(*kind, s).is_empty())
                .map(|s| format!("{} shard {s}", kind.as_str()))
        })
    }
}

/// A refused request: the error, the request id it answers, and for 429 when to retry.
#[derive(Debug)]
pub struct Refusal {
    /// Why.
    pub error: RecdError,
    /// The request's id, when one was assigned.
    pub request_id: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RecdError::new(code, message).into()
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        self.error.code.http_status()
    }
}

impl From<RecdError> for Refusal {
    fn from(error: RecdError) -> Self {
        Self {
            error,
            request_id: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            code: self.error.code.as_str().into(),
            message: self.error.message,
            request_id: self.request_id,
        };
        let mut r = (status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}
