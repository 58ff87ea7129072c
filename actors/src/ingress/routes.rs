//! HTTP routes: `/recommend` and `/healthz` here; the operator routes (`/readyz`,
//! `/metrics`, `/cluster`, `/admin/fault`) in `ops`.
//! Every refusal is a JSON `ErrorBody` with the status of its `ErrorCode`.

use super::ops::{self, ClusterView, FaultTargets};
use crate::experiments::AbScenarios;
use crate::gateway::GatewayMessage;
use crate::pipeline::PipelineMessage;
use crate::request::PendingRequest;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use recd_runtime::admission::Admission;
use recd_runtime::api::{ErrorBody, RecommendRequest};
use recd_runtime::config::{GatewayConfig, IngressConfig};
use recd_runtime::lanes::LaneSaturation;
use recd_runtime::metrics::Metrics;
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
    /// Actors `/admin/fault` may target.
    pub faults: FaultTargets,
}

/// Shared state of the HTTP handlers.
pub struct IngressState {
    /// Limits.
    pub config: IngressConfig,
    /// Lanes and deadlines.
    pub gateway_config: GatewayConfig,
    /// A/B assignment.
    pub ab: AbScenarios,
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
    /// Set at shutdown: `/readyz` and `/recommend` answer 503 from then on.
    pub draining: AtomicBool,
    id_prefix: u32,
    next_id: AtomicU64,
}

/// Grace on top of a request's budget before the ingress answers 504 itself.
const REPLY_GRACE: Duration = Duration::from_millis(20);

impl IngressState {
    /// Handler state; `serving` is set later by the node.
    pub fn new(
        config: IngressConfig,
        gateway_config: GatewayConfig,
        ab: AbScenarios,
        metrics: Arc<Metrics>,
        saturation: Arc<LaneSaturation>,
        cluster: ClusterView,
        fault_injection: bool,
    ) -> Self {
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
        Self {
            config,
            gateway_config,
            ab,
            admission,
            lane_admission,
            slo,
            saturation,
            cluster,
            metrics,
            serving: OnceLock::new(),
            fault_injection,
            draining: AtomicBool::new(false),
            id_prefix,
            next_id: AtomicU64::new(0),
        }
    }

    fn request_id(&self) -> String {
        format!(
            "{:08x}-{:010x}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The HTTP router.
pub fn router(state: Arc<IngressState>) -> Router {
    Router::new()
        .route("/recommend", post(recommend))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/admin/fault", post(ops::fault))
        .route("/cluster", get(ops::cluster))
        .fallback(|| async { error(ErrorCode::NotFound, "no such route", None) })
        .method_not_allowed_fallback(|| async {
            let mut r = error(
                ErrorCode::BadRequest,
                "method not allowed on this route",
                None,
            );
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
        .with_state(state)
}

pub(super) fn error(
    code: ErrorCode,
    message: impl Into<String>,
    request_id: Option<&str>,
) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody {
        code: code.as_str().into(),
        message: message.into(),
        request_id: request_id.map(str::to_owned),
    };
    (status, Json(body)).into_response()
}

/// What the request header checks produced.
struct Checked {
    lane: usize,
    budget: Duration,
    forced_variant: Option<String>,
}

fn check_headers(st: &IngressState, headers: &HeaderMap) -> Result<Checked, RecdError> {
    let text = |name: &str| -> Result<Option<&str>, RecdError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    RecdError::bad_request(format!("header {name} is not visible ascii"))
                })
            })
            .transpose()
    };
    let lanes = &st.gateway_config.lanes;
    let lane_name = text("x-priority")?.unwrap_or(&st.gateway_config.default_lane);
    let lane = lanes
        .iter()
        .position(|l| l.name == lane_name)
        .ok_or_else(|| {
            let known: Vec<_> = lanes.iter().map(|l| l.name.as_str()).collect();
            RecdError::bad_request(format!(
                "unknown lane {lane_name:?} in X-Priority (known: {})",
                known.join(", ")
            ))
        })?;
    let budget = match text("x-deadline-ms")? {
        None => Duration::from_millis(lanes[lane].deadline_ms),
        Some(v) => {
            let max = st.gateway_config.max_deadline_ms;
            match v.trim().parse::<u64>() {
                Ok(ms) if (1..=max).contains(&ms) => Duration::from_millis(ms),
                _ => {
                    return Err(RecdError::bad_request(format!(
                        "X-Deadline-Ms must be an integer in 1..={max}"
                    )))
                }
            }
        }
    };
    let forced_variant = match text("x-variant")? {
        None => None,
        Some(v) => Some(
            st.ab
                .variant_named(v)
                .ok_or_else(|| {
                    RecdError::bad_request(format!("unknown variant {v:?} in X-Variant"))
                })?
                .to_owned(),
        ),
    };
    Ok(Checked {
        lane,
        budget,
        forced_variant,
    })
}

async fn read_request(
    st: &IngressState,
    headers: &HeaderMap,
    body: Body,
) -> Result<RecommendRequest, RecdError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if mime != "application/json" {
        return Err(RecdError::new(
            ErrorCode::UnsupportedMediaType,
            "content type must be application/json",
        ));
    }
    let limit = st.config.max_body_bytes;
    let too_large = || {
        RecdError::new(
            ErrorCode::PayloadTooLarge,
            format!("body exceeds {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    let req: RecommendRequest = serde_json::from_slice(&bytes)
        .map_err(|e| RecdError::bad_request(format!("invalid json body: {e}")))?;
    let max_len = st.config.max_user_id_len;
    if req.user_id.is_empty() || req.user_id.len() > max_len {
        return Err(RecdError::bad_request(format!(
            "user_id must be 1..={max_len} bytes"
        )));
    }
    if req.user_id.chars().any(char::is_control) {
        return Err(RecdError::bad_request("user_id must be printable"));
    }
    if req.topk == 0 || req.topk > st.config.max_topk {
        return Err(RecdError::bad_request(format!(
            "topk must be in 1..={}",
            st.config.max_topk
        )));
    }
    Ok(req)
}

async fn recommend(
    State(st): State<Arc<IngressState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = recd_runtime::clock::now();
    let request_id = st.request_id();
    let lane_label =
        |lane: Option<usize>| lane.map_or("none", |l| st.gateway_config.lanes[l].name.as_str());
    let refuse = |lane: Option<usize>, variant: &str, e: RecdError| {
        let status = e.code.http_status();
        if let Some(l) = lane {
            let now = recd_runtime::clock::now();
            st.slo
                .record(l, status, now.saturating_duration_since(received), now);
        }
        st.metrics
            .requests
            .with_label_values(&[lane_label(lane), variant, &status.to_string()])
            .inc();
        error(e.code, e.message, Some(&request_id))
    };
    let checked = match check_headers(&st, &headers) {
        Ok(c) => c,
        Err(e) => return refuse(None, "none", e),
    };
    let lane = Some(checked.lane);
    if st.saturation.is_saturated(checked.lane) {
        let name = &st.gateway_config.lanes[checked.lane].name;
        st.metrics
            .shed
            .with_label_values(&[name, "saturated"])
            .inc();
        let e = RecdError::overloaded(format!("shed: lane {name} is saturated"));
        return refuse(lane, "none", e);
    }
    // a body that trickles in spends the request's budget, not the server's patience
    let req = match tokio::time::timeout(checked.budget, read_request(&st, &headers, body)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return refuse(lane, "none", e),
        Err(_) => {
            let e = RecdError::deadline("latency budget spent reading the request body");
            return refuse(lane, "none", e);
        }
    };
    let variant = checked
        .forced_variant
        .unwrap_or_else(|| st.ab.assign(&req.user_id).to_owned());
    let Some(serving) = st.serving.get() else {
        return refuse(
            lane,
            &variant,
            RecdError::unavailable("not ready: loading shards"),
        );
    };
    if st.draining.load(Ordering::Relaxed) {
        return refuse(lane, &variant, RecdError::unavailable("shutting down"));
    }
    if !serving.takes_requests {
        let e = RecdError::unavailable("this node does not run the ingress role");
        return refuse(lane, &variant, e);
    }
    // the lane's bucket first: a lane over its own limit must not spend global tokens
    let admitted = st.lane_admission[checked.lane]
        .check()
        .and_then(|()| st.admission.check());
    if let Err(wait) = admitted {
        st.metrics
            .shed
            .with_label_values(&[lane_label(lane), "rate_limited"])
            .inc();
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let e = RecdError::new(
            ErrorCode::RateLimited,
            format!("over the admitted rate, retry after {secs} s"),
        );
        let mut r = refuse(lane, &variant, e);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return r;
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pending = PendingRequest {
        request_id: request_id.clone(),
        user_id: Arc::from(req.user_id.as_str()),
        topk: req.topk as usize,
        lane: checked.lane,
        variant: variant.clone(),
        received,
        deadline: received + checked.budget,
        reply: tx,
    };
    let submitted = serving
        .gateway
        .get(0)
        .map(|g| g.cast(GatewayMessage::Submit(pending)));
    if !matches!(submitted, Some(Ok(()))) {
        return refuse(
            lane,
            &variant,
            RecdError::unavailable("gateway unavailable"),
        );
    }
    let reply_by = received + checked.budget + REPLY_GRACE;
    let wait = reply_by.saturating_duration_since(recd_runtime::clock::now());
    let answer = match tokio::time::timeout(wait, rx).await {
        Ok(Ok(Ok(answer))) => answer,
        Ok(Ok(Err(e))) => return refuse(lane, &variant, e),
        Ok(Err(_)) => {
            return refuse(
                lane,
                &variant,
                RecdError::unavailable("request dropped by a failing stage"),
            )
        }
        Err(_) => return refuse(lane, &variant, RecdError::deadline("latency budget spent")),
    };
    let total = recd_runtime::clock::now().saturating_duration_since(received);
    st.slo
        .record(checked.lane, 200, total, recd_runtime::clock::now());
    let lane_name = lane_label(lane);
    st.metrics
        .requests
        .with_label_values(&[lane_name, &variant, "200"])
        .inc();
    st.metrics
        .request_duration
        .with_label_values(&[lane_name])
        .observe(total.as_secs_f64());
    let mut r = Json(answer.response).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&answer.timings.server_timing(total)) {
        h.insert("server-timing", v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-request-id", v);
    }
    r
}
