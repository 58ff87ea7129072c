//! Operator routes: `/readyz`, `/cluster`, `/metrics`, `/admin/fault`, and what they
//! read (`ClusterView`).

use super::state::{IngressState, Refusal};
use crate::candidates::shard::IndexShardMessage;
use crate::features::shard::FeatureShardMessage;
use crate::ranker::actor::RankerMessage;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::slo::WINDOWS;
use recd_runtime::ErrorCode;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub(super) async fn readyz(State(st): State<Arc<IngressState>>) -> Response {
    if st.draining.load(Ordering::Relaxed) {
        return Refusal::new(ErrorCode::Unavailable, "shutting down").into_response();
    }
    let Some(s) = st.serving.get() else {
        return Refusal::new(ErrorCode::Unavailable, "loading shards").into_response();
    };
    if s.takes_requests && s.gateway.live() == 0 {
        return Refusal::new(ErrorCode::Unavailable, "the gateway is restarting").into_response();
    }
    if s.takes_requests && s.pipeline.live() == 0 {
        return Refusal::new(ErrorCode::Unavailable, "no pipeline worker is live").into_response();
    }
    if s.local.index.slots.live() < s.local.index.slots.len() {
        return Refusal::new(ErrorCode::Unavailable, "an index shard is restarting")
            .into_response();
    }
    let c = &st.cluster;
    if s.takes_requests && !c.covered.load(Ordering::Relaxed) {
        // once every shard had a live replica the node stays ready: a later loss is
        // served degraded (coverage < 1), not by taking the node out (docs/adr/0010)
        if let Some(missing) = c.uncovered() {
            let msg = format!("waiting for a live replica of {missing}");
            return Refusal::new(ErrorCode::Unavailable, msg).into_response();
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
        return Refusal::new(
            ErrorCode::NotFound,
            "fault injection is disabled (admin.fault_injection)",
        )
        .into_response();
    }
    let Some(serving) = st.serving.get() else {
        return Refusal::new(ErrorCode::Unavailable, "not ready").into_response();
    };
    let req: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Refusal::new(ErrorCode::BadRequest, format!("invalid json body: {e}"))
                .into_response()
        }
    };
    let f = &serving.local;
    let sent = match req.pool.as_str() {
        "features" => f
            .features
            .slots
            .get(req.slot)
            .map(|a| a.cast(FeatureShardMessage::InjectPanic).is_ok()),
        "index" => f
            .index
            .slots
            .get(req.slot)
            .map(|a| a.cast(IndexShardMessage::InjectPanic).is_ok()),
        "ranker" => f
            .ranker
            .get(req.slot)
            .map(|a| a.cast(RankerMessage::InjectPanic).is_ok()),
        "ingress" => {
            (st.ingress.get(req.slot)).map(|a| a.cast(super::IngressMessage::InjectPanic).is_ok())
        }
        other => {
            return Refusal::new(
                ErrorCode::BadRequest,
                format!("unknown pool {other:?} (features, index, ranker, ingress)"),
            )
            .into_response()
        }
    };
    match sent {
        Some(true) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"injected": req.pool, "slot": req.slot})),
        )
            .into_response(),
        _ => Refusal::new(
            ErrorCode::Unavailable,
            format!("{} slot {} is not live", req.pool, req.slot),
        )
        .into_response(),
    }
}
