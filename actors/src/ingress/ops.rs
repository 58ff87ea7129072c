//! Operator routes: `/readyz`, `/cluster`, `/metrics`, `/admin/fault`, and what they
//! read (`ClusterView`, `FaultTargets`). `/recommend` is in `routes`.

use super::routes::{error, IngressState};
use crate::candidates::shard::IndexShardMessage;
use crate::features::shard::FeatureShardMessage;
use crate::ranker::actor::RankerMessage;
use crate::remote::router::Router as ShardRouter;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::cluster::Membership;
use recd_runtime::config::Role;
use recd_runtime::peers::Peers;
use recd_runtime::placement::Placement;
use recd_runtime::pool::PoolSlots;
use recd_runtime::slo::WINDOWS;
use recd_runtime::ErrorCode;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Pools reachable by the fault-injection endpoint.
pub struct FaultTargets {
    /// Feature shards.
    pub features: Arc<PoolSlots<FeatureShardMessage>>,
    /// Index shards.
    pub index: Arc<PoolSlots<IndexShardMessage>>,
    /// Rankers.
    pub ranker: Arc<PoolSlots<RankerMessage>>,
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
    pub router: Arc<ShardRouter>,
    /// This node's roles.
    pub roles: Vec<Role>,
    /// Latched once every shard had a live replica (readiness of an ingress node).
    pub covered: AtomicBool,
}

impl ClusterView {
    /// Live replicas per shard, per kind.
    fn live(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (kind, sets) in &self.placement.map {
            let live: Vec<Vec<String>> = (0..sets.len())
                .map(|s| self.router.live_replicas(*kind, s))
                .collect();
            out.insert(kind.as_str().to_owned(), serde_json::json!(live));
        }
        serde_json::Value::Object(out)
    }

    /// The first shard with no live replica, if any.
    fn uncovered(&self) -> Option<String> {
        self.placement.map.iter().find_map(|(kind, sets)| {
            (0..sets.len())
                .find(|&s| self.router.live_replicas(*kind, s).is_empty())
                .map(|s| format!("{} shard {s}", kind.as_str()))
        })
    }
}

pub(super) async fn readyz(State(st): State<Arc<IngressState>>) -> Response {
    if st.draining.load(Ordering::Relaxed) {
        return error(ErrorCode::Unavailable, "shutting down", None);
    }
    let Some(s) = st.serving.get() else {
        return error(ErrorCode::Unavailable, "loading shards", None);
    };
    if s.takes_requests && s.gateway.live() == 0 {
        return error(ErrorCode::Unavailable, "the gateway is restarting", None);
    }
    if s.takes_requests && s.pipeline.live() == 0 {
        return error(ErrorCode::Unavailable, "no pipeline worker is live", None);
    }
    if s.faults.index.live() < s.faults.index.len() {
        return error(ErrorCode::Unavailable, "an index shard is restarting", None);
    }
    let c = &st.cluster;
    if s.takes_requests && !c.covered.load(Ordering::Relaxed) {
        // once every shard had a live replica the node stays ready: a later loss is
        // served degraded (coverage < 1), not by taking the node out (docs/adr/0010)
        if let Some(missing) = c.uncovered() {
            let msg = format!("waiting for a live replica of {missing}");
            return error(ErrorCode::Unavailable, msg, None);
        }
        c.covered.store(true, Ordering::Relaxed);
    }
    Json(serde_json::json!({"status": "ready"})).into_response()
}

pub(super) async fn cluster(State(st): State<Arc<IngressState>>) -> Response {
    let c = &st.cluster;
    let peers: Vec<serde_json::Value> = (c.peers.snapshot().into_iter())
        .filter_map(|p| {
            let name = c.membership.name_of(p.node)?;
            let mut v = serde_json::to_value(&p).ok()?;
            v["name"] = serde_json::json!(name);
            Some(v)
        })
        .collect();
    Json(serde_json::json!({
        "self": c.membership.me(),
        "roles": c.roles,
        "members": c.membership.members(),
        "peers": peers,
        "placement": c.placement.map,
        "live": c.live(),
    }))
    .into_response()
}

pub(super) async fn metrics(State(st): State<Arc<IngressState>>) -> Response {
    let members = st.cluster.membership.members().len() as i64;
    st.metrics.cluster_members.set(members);
    let now = recd_runtime::clock::now();
    for (i, lane) in st.gateway_config.lanes.iter().enumerate() {
        for (window, buckets) in WINDOWS {
            let burn = st.slo.burn_rate(i, buckets, now);
            st.metrics
                .slo_burn_rate
                .with_label_values(&[&lane.name, window])
                .set(burn);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.encode(),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    pool: String,
    slot: usize,
}

pub(super) async fn fault(
    State(st): State<Arc<IngressState>>,
    body: axum::body::Bytes,
) -> Response {
    if !st.fault_injection {
        return error(
            ErrorCode::NotFound,
            "fault injection is disabled (admin.fault_injection)",
            None,
        );
    }
    let Some(serving) = st.serving.get() else {
        return error(ErrorCode::Unavailable, "not ready", None);
    };
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                ErrorCode::BadRequest,
                format!("invalid json body: {e}"),
                None,
            )
        }
    };
    let f = &serving.faults;
    let sent = match req.pool.as_str() {
        "features" => f
            .features
            .get(req.slot)
            .map(|a| a.cast(FeatureShardMessage::InjectPanic).is_ok()),
        "index" => f
            .index
            .get(req.slot)
            .map(|a| a.cast(IndexShardMessage::InjectPanic).is_ok()),
        "ranker" => f
            .ranker
            .get(req.slot)
            .map(|a| a.cast(RankerMessage::InjectPanic).is_ok()),
        other => {
            return error(
                ErrorCode::BadRequest,
                format!("unknown pool {other:?} (features, index, ranker)"),
                None,
            )
        }
    };
    match sent {
        Some(true) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"injected": req.pool, "slot": req.slot})),
        )
            .into_response(),
        _ => error(
            ErrorCode::Unavailable,
            format!("{} slot {} is not live", req.pool, req.slot),
            None,
        ),
    }
}
