//! `POST /recommend`: parse → submit → answer. Parsing checks the headers (lane, deadline,
//! forced variant), refuses a saturated lane before the body is read, reads the body
//! within the request's budget, validates it and admits it (lane and global token
//! buckets); submitting hands a `PendingRequest` to the gateway; answering waits for the
//! pipeline's reply until the budget (plus a grace) runs out. Any step may refuse with a
//! [`Refusal`]; the handler records it (requests, SLO) and renders it.

use super::access::AccessNote;
use super::body::read_json;
use super::state::{IngressState, Refusal};
use crate::gateway::GatewayMessage;
use crate::request::{Answer, PendingRequest};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::api::RecommendRequest;
use recd_runtime::{ErrorCode, RecdError};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Grace on top of a request's budget before the ingress answers 504 itself.
const REPLY_GRACE: Duration = Duration::from_millis(20);

/// What the request header checks produced.
struct Checked {
    lane: usize,
    budget: Duration,
    forced_variant: Option<String>,
    forced_shadow: bool,
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
    let forced_shadow = match text("x-shadow")? {
        None | Some("0") => false,
        Some("1") if st.ab.experiment.shadow.is_some() => true,
        Some("1") => {
            return Err(RecdError::bad_request(
                "X-Shadow: the experiment has no shadow variant",
            ))
        }
        Some(_) => return Err(RecdError::bad_request("X-Shadow must be 0 or 1")),
    };
    Ok(Checked {
        lane,
        budget,
        forced_variant,
        forced_shadow,
    })
}

async fn read_request(
    st: &IngressState,
    headers: &HeaderMap,
    body: Body,
) -> Result<RecommendRequest, RecdError> {
    let req: RecommendRequest = read_json(headers, body, st.config.max_body_bytes).await?;
    st.check_user_id(&req.user_id)?;
    if req.topk == 0 || req.topk > st.config.max_topk {
        return Err(RecdError::bad_request(format!(
            "topk must be in 1..={}",
            st.config.max_topk
        )));
    }
    Ok(req)
}

/// What is known of a request so far, for its metrics: lane and variant once parsed.
struct Labels {
    lane: Option<usize>,
    variant: String,
}

/// A parsed, validated, admitted request.
struct Admitted {
    req: RecommendRequest,
    lane: usize,
    budget: Duration,
    variant: String,
    shadow: bool,
}

pub(super) async fn recommend(
    State(st): State<Arc<IngressState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let received = recd_runtime::clock::now();
    let ctx = super::access::current();
    let (request_id, trace) = match &ctx {
        Some(c) => (c.request_id.clone(), c.trace.trace_id),
        None => (st.request_id(), 0),
    };
    let mut labels = Labels {
        lane: None,
        variant: "none".into(),
    };
    let result = async {
        let admitted = parse(&st, &headers, body, &mut labels).await?;
        let (lane, budget) = (admitted.lane, admitted.budget);
        let reply = submit(&st, admitted, received, (&request_id, trace))?;
        answer(reply, received + budget + REPLY_GRACE)
            .await
            .map(|a| (lane, a))
    }
    .await;
    let now = recd_runtime::clock::now();
    let took = now.saturating_duration_since(received);
    let lane_name =
        |lane: Option<usize>| lane.map_or("none", |l| st.gateway_config.lanes[l].name.as_str());
    match result {
        Ok((lane, answer)) => {
            st.slo.record(lane, 200, took, now);
            let name = lane_name(Some(lane));
            st.metrics
                .requests
                .with_label_values(&[name, &labels.variant, "200"])
                .inc();
            st.metrics
                .request_duration
                .with_label_values(&[name])
                .observe(took.as_secs_f64());
            st.metrics
                .variant_duration
                .with_label_values(&[&labels.variant])
                .observe(took.as_secs_f64());
            let note = AccessNote {
                lane: Some(name.to_owned()),
                variant: Some(labels.variant.clone()),
                model: answer.response.model.clone(),
                degraded: answer.response.degraded.clone(),
                timings: answer.timings,
                batch_trace: answer.batch_trace,
            };
            let mut r = Json(answer.response).into_response();
            if let Ok(v) = HeaderValue::from_str(&answer.timings.server_timing(took)) {
                r.headers_mut().insert("server-timing", v);
            }
            r.extensions_mut().insert(note);
            r
        }
        Err(mut refusal) => {
            let status = refusal.status();
            if let Some(l) = labels.lane {
                st.slo.record(l, status, took, now);
            }
            st.metrics
                .requests
                .with_label_values(&[lane_name(labels.lane), &labels.variant, &status.to_string()])
                .inc();
            refusal.request_id = Some(request_id);
            let note = AccessNote {
                lane: labels.lane.map(|l| lane_name(Some(l)).to_owned()),
                variant: Some(labels.variant.clone()),
                ..AccessNote::default()
            };
            let mut r = refusal.into_response();
            r.extensions_mut().insert(note);
            r
        }
    }
}

/// Headers, lane saturation, body, validation, variant, readiness and admission.
async fn parse(
    st: &IngressState,
    headers: &HeaderMap,
    body: Body,
    labels: &mut Labels,
) -> Result<Admitted, Refusal> {
    let checked = check_headers(st, headers)?;
    labels.lane = Some(checked.lane);
    let lane_name = &st.gateway_config.lanes[checked.lane].name;
    let shed = |reason: &str| {
        st.metrics
            .shed
            .with_label_values(&[lane_name, reason])
            .inc()
    };
    if st.saturation.is_saturated(checked.lane) {
        shed("saturated");
        return Err(RecdError::overloaded(format!("shed: lane {lane_name} is saturated")).into());
    }
    // a body that trickles in spends the request's budget, not the server's patience
    let req = tokio::time::timeout(checked.budget, read_request(st, headers, body))
        .await
        .map_err(|_| RecdError::deadline("latency budget spent reading the request body"))??;
    labels.variant = checked
        .forced_variant
        .unwrap_or_else(|| st.ab.assign(&req.user_id).to_owned());
    let Some(serving) = st.serving.get() else {
        return Err(RecdError::unavailable("not ready: loading shards").into());
    };
    if st.draining.load(Ordering::Relaxed) {
        return Err(RecdError::unavailable("shutting down").into());
    }
    if !serving.takes_requests {
        return Err(RecdError::unavailable("this node does not run the ingress role").into());
    }
    // the lane's bucket first: a lane over its own limit must not spend global tokens
    let admitted = st.lane_admission[checked.lane]
        .check()
        .and_then(|()| st.admission.check());
    if let Err(wait) = admitted {
        shed("rate_limited");
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!("over the admitted rate, retry after {secs} s");
        let mut refusal = Refusal::new(ErrorCode::RateLimited, message);
        refusal.retry_after = Some(secs);
        return Err(refusal);
    }
    let shadow = checked.forced_shadow || st.ab.shadows(&req.user_id);
    Ok(Admitted {
        req,
        lane: checked.lane,
        budget: checked.budget,
        variant: labels.variant.clone(),
        shadow,
    })
}

/// Hands the request to the gateway; its answer comes on the returned receiver.
fn submit(
    st: &IngressState,
    a: Admitted,
    received: Instant,
    (request_id, trace): (&str, u128),
) -> Result<oneshot::Receiver<Result<Answer, RecdError>>, Refusal> {
    let (tx, rx) = oneshot::channel();
    let pending = PendingRequest {
        request_id: request_id.to_owned(),
        trace,
        user_id: Arc::from(a.req.user_id.as_str()),
        topk: a.req.topk as usize,
        lane: a.lane,
        variant: Arc::from(a.variant),
        shadow: a.shadow,
        received,
        deadline: received + a.budget,
        reply: tx,
    };
    let gateway = st.serving.get().and_then(|s| s.gateway.get(0));
    let sent = gateway.is_some_and(|g| g.cast(GatewayMessage::Submit(pending)).is_ok());
    match sent {
        true => Ok(rx),
        false => Err(RecdError::unavailable("gateway unavailable").into()),
    }
}

/// The pipeline's answer, or a 504 once `reply_by` has passed.
async fn answer(
    rx: oneshot::Receiver<Result<Answer, RecdError>>,
    reply_by: Instant,
) -> Result<Answer, Refusal> {
    let wait = reply_by.saturating_duration_since(recd_runtime::clock::now());
    match tokio::time::timeout(wait, rx).await {
        Ok(Ok(answer)) => answer.map_err(Refusal::from),
        Ok(Err(_)) => Err(RecdError::unavailable("request dropped by a failing stage").into()),
        Err(_) => Err(RecdError::deadline("latency budget spent").into()),
    }
}
