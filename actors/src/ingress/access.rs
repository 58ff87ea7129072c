//! What every HTTP request passes through around its route (axum middleware):
//!
//! ```text
//! public port: trace context (traceparent in, generated if absent) ─ request id
//!              (X-Request-Id in, else assigned) ─ tenant (tenants.rs: 401/403/429)
//!              ─ route (in the request's task: `current()`) ─ traceparent and
//!              X-Request-Id on the answer, refusals too ─ tenant counter ─ access log
//! admin port:  the same trace and id ─ bearer token (401) ─ route
//! ```
//!
//! The access log is one `recd::access` line per request (a sampled share of them, by
//! trace id: `ingress.access_log_sample`; always when the caller sampled the trace or the
//! answer is a 5xx): trace id, request id, route, status, tenant, lane, variant, model,
//! degraded rungs, per-stage times, and the batch trace its remote calls carried.

use super::state::{IngressState, Refusal};
use super::tenants::Tenants;
use crate::request::StageTimings;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use recd_runtime::config::Scope;
use recd_runtime::trace::{hex, TraceContext};
use recd_runtime::ErrorCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

tokio::task_local! {
    static CURRENT: RequestCtx;
}

/// Who a request is and which trace it belongs to, while its route runs.
#[derive(Debug, Clone)]
pub(super) struct RequestCtx {
    pub(super) trace: TraceContext,
    pub(super) request_id: String,
}

/// The context of the request this task serves (`None` outside a route).
pub(super) fn current() -> Option<RequestCtx> {
    CURRENT.try_with(Clone::clone).ok()
}

/// The trace id of the request this task serves; 0 outside a route.
pub(super) fn current_trace() -> u128 {
    CURRENT.try_with(|c| c.trace.trace_id).unwrap_or(0)
}

/// What a route tells the access log (a response extension).
#[derive(Debug, Clone, Default)]
pub(super) struct AccessNote {
    pub(super) lane: Option<String>,
    pub(super) variant: Option<String>,
    pub(super) model: Option<String>,
    pub(super) degraded: Vec<String>,
    pub(super) timings: StageTimings,
    pub(super) batch_trace: u128,
}

/// The scope a public route needs; `None` for probes and metrics.
fn scope_of(method: &Method, path: &str) -> Option<Scope> {
    match (method, path) {
        (&Method::POST, "/recommend") => Some(Scope::Read),
        (&Method::POST, "/v1/events") => Some(Scope::Write),
        (&Method::PUT | &Method::DELETE, p)
            if p.starts_with("/v1/users/") || p.starts_with("/v1/items/") =>
        {
            Some(Scope::Write)
        }
        _ => None,
    }
}

/// An `X-Request-Id` from the caller is kept when it is 1..=64 of `[A-Za-z0-9._-]`.
fn callers_id(headers: &HeaderMap) -> Option<String> {
    let id = headers.get("x-request-id")?.to_str().ok()?;
    let fine = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    fine.then(|| id.to_owned())
}

fn context(st: &IngressState, headers: &HeaderMap) -> (TraceContext, String) {
    let parent = headers.get("traceparent").and_then(|v| v.to_str().ok());
    let trace = TraceContext::from_header(parent);
    let id = callers_id(headers).unwrap_or_else(|| st.request_id());
    (trace, id)
}

fn stamp(resp: &mut Response, trace: &TraceContext, request_id: &str) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&trace.traceparent()) {
        h.insert("traceparent", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
}

/// The public port's middleware: trace, id, tenant, route, stamps, counter, access log.
pub(super) async fn public(
    State(st): State<Arc<IngressState>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let (trace, request_id) = context(&st, req.headers());
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let scope = scope_of(&method, &path);
    let (tenant, admitted) = st.tenants.admit(req.headers(), scope);
    let mut admitted = admitted.map_err(|(error, retry_after)| Refusal {
        error,
        request_id: None,
        retry_after,
    });
    if scope.is_some() && st.draining.load(Ordering::SeqCst) {
        let mut refusal = Refusal::new(ErrorCode::Unavailable, "draining: retry on another node");
        refusal.retry_after = Some(1);
        admitted = Err(refusal);
    }
    let _in_flight = InFlight::enter(&st.in_flight);
    let mut resp = match admitted {
        Ok(()) => {
            let ctx = RequestCtx {
                trace,
                request_id: request_id.clone(),
            };
            CURRENT.scope(ctx, next.run(req)).await
        }
        Err(mut refusal) => {
            refusal.request_id = Some(request_id.clone());
            refusal.into_response()
        }
    };
    stamp(&mut resp, &trace, &request_id);
    let status = resp.status().as_u16();
    if scope.is_some() {
        count(&st.tenants, &tenant, status);
    }
    if scope.is_some() || status >= 500 {
        log(
            &st,
            &trace,
            &request_id,
            (&method, &path, status),
            &tenant,
            resp.extensions().get(),
            started,
        );
    }
    resp
}

/// A request being answered on the public port (the drain waits for none to be left).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn enter(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Self(n)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn count(tenants: &Tenants, tenant: &str, status: u16) {
    tenants
        .requests
        .with_label_values(&[tenant, &status.to_string()])
        .inc();
}

fn log(
    st: &IngressState,
    trace: &TraceContext,
    request_id: &str,
    (method, path, status): (&Method, &str, u16),
    tenant: &str,
    note: Option<&AccessNote>,
    started: Instant,
) {
    // the same trace is sampled on every node: the decision is a function of its id
    let share = (trace.trace_id as u64) as f64 / u64::MAX as f64;
    if !(trace.sampled || status >= 500 || share < st.config.access_log_sample) {
        return;
    }
    let none = AccessNote::default();
    let n = note.unwrap_or(&none);
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    tracing::info!(
        target: "recd::access",
        trace_id = %trace.trace_hex(),
        request_id,
        method = %method,
        path,
        status,
        tenant,
        lane = n.lane.as_deref().unwrap_or(""),
        variant = n.variant.as_deref().unwrap_or(""),
        model = n.model.as_deref().unwrap_or(""),
        degraded = %n.degraded.join(","),
        batch_trace = %if n.batch_trace == 0 { String::new() } else { hex(n.batch_trace) },
        queue_ms = ms(n.timings.queue),
        features_ms = ms(n.timings.features),
        candidates_ms = ms(n.timings.candidates),
        rank_ms = ms(n.timings.rank),
        duration_ms = ms(started.elapsed()),
        "request"
    );
}

/// The admin port's middleware: trace and id, then `Authorization: Bearer <admin.token>`.
pub(super) async fn admin(
    State(st): State<Arc<IngressState>>,
    req: Request,
    next: Next,
) -> Response {
    let (trace, request_id) = context(&st, req.headers());
    let presented = (req.headers().get(axum::http::header::AUTHORIZATION))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut resp = match presented {
        Some(token) if same(token.as_bytes(), st.admin_token.as_bytes()) => {
            let ctx = RequestCtx {
                trace,
                request_id: request_id.clone(),
            };
            CURRENT.scope(ctx, next.run(req)).await
        }
        _ => {
            let mut refusal = Refusal::new(
                ErrorCode::Unauthenticated,
                "the admin surface needs Authorization: Bearer <admin.token>",
            );
            refusal.request_id = Some(request_id.clone());
            refusal.into_response()
        }
    };
    stamp(&mut resp, &trace, &request_id);
    resp
}

/// Constant-time equality (a token compare must not leak how much of it matched).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && !b.is_empty()
        && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_routes() {
        assert_eq!(scope_of(&Method::POST, "/recommend"), Some(Scope::Read));
        assert_eq!(scope_of(&Method::POST, "/v1/events"), Some(Scope::Write));
        assert_eq!(
            scope_of(&Method::PUT, "/v1/users/alice"),
            Some(Scope::Write)
        );
        assert_eq!(scope_of(&Method::DELETE, "/v1/items/7"), Some(Scope::Write));
        assert_eq!(scope_of(&Method::GET, "/metrics"), None);
        assert_eq!(scope_of(&Method::GET, "/readyz"), None);
    }

    #[test]
    fn request_ids_and_tokens() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123_x.y".parse().unwrap());
        assert_eq!(callers_id(&h).as_deref(), Some("abc-123_x.y"));
        h.insert("x-request-id", "has space".parse().unwrap());
        assert_eq!(callers_id(&h), None);
        h.insert("x-request-id", "a".repeat(65).parse().unwrap());
        assert_eq!(callers_id(&h), None);
        assert!(same(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same(b"0123456789abcdeF", b"0123456789abcdef"));
        assert!(!same(b"0123", b"0123456789abcdef"));
        assert!(!same(b"", b""), "no token configured matches nothing");
    }
}
