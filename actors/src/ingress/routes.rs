//! The HTTP routes: `/recommend` (in [`super::recommend`]), the writes (`/v1/events`,
//! `/v1/users/{id}`, in [`super::writes`]), `/healthz`, and the operator routes
//! (`/readyz`, `/metrics`, `/cluster`, `/admin/fault`, in [`super::ops`]; `/admin/models`,
//! in `super::models`).

use super::state::{IngressState, Refusal};
use super::{items, models, ops, recommend, writes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use recd_runtime::ErrorCode;
use std::sync::Arc;

/// Alive unless a supervised child of the root died (then the orchestrator restarts us).
async fn healthz(State(st): State<Arc<IngressState>>) -> Response {
    match st.health.failure() {
        None => Json(serde_json::json!({"status": "ok"})).into_response(),
        Some(why) => Refusal::new(ErrorCode::Internal, format!("unhealthy: {why}")).into_response(),
    }
}

/// The HTTP router.
pub fn router(state: Arc<IngressState>) -> Router {
    Router::new()
        .route("/recommend", post(recommend::recommend))
        .route("/v1/events", post(writes::events))
        .route(
            "/v1/users/{id}",
            get(writes::get_user)
                .put(writes::put_user)
                .delete(writes::delete_user),
        )
        .route(
            "/v1/items/{id}",
            axum::routing::put(items::put_item).delete(items::delete_item),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/admin/fault", post(ops::fault))
        .route("/admin/models", get(models::list))
        .route("/admin/models/reload", post(models::reload))
        .route("/admin/experiments", get(models::experiments))
        .route("/cluster", get(ops::cluster))
        .fallback(|| async { Refusal::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            let mut r = Refusal::new(ErrorCode::BadRequest, "method not allowed on this route")
                .into_response();
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
        .with_state(state)
}
