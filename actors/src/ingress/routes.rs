//! The HTTP routes of the two listeners. Public: `/recommend` (in [`super::recommend`]),
//! the writes (`/v1/events`, `PUT`/`DELETE /v1/users/{id}`, in [`super::writes`];
//! `/v1/items/{id}`), `/healthz`, `/readyz` and `/metrics` (in [`super::ops`]). Admin
//! (bearer token): `/cluster`, `/admin/fault`, `GET /v1/users/{id}`, `/admin/models`,
//! `/admin/models/reload`, `/admin/experiments`. Each router is wrapped in its
//! middleware ([`super::access`]).

use super::state::{IngressState, Refusal};
use super::{access, items, models, ops, recommend, writes};
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

/// The public port's router.
pub fn router(state: Arc<IngressState>) -> Router {
    let layer = axum::middleware::from_fn_with_state(Arc::clone(&state), access::public);
    finish(
        Router::new()
            .route("/recommend", post(recommend::recommend))
            .route("/v1/events", post(writes::events))
            .route(
                "/v1/users/{id}",
                axum::routing::put(writes::put_user).delete(writes::delete_user),
            )
            .route(
                "/v1/items/{id}",
                axum::routing::put(items::put_item).delete(items::delete_item),
            )
            .route("/healthz", get(healthz))
            .route("/readyz", get(ops::readyz))
            .route("/metrics", get(ops::metrics)),
    )
    .layer(layer)
    .with_state(state)
}

/// The admin port's router (every route needs the admin token).
pub fn admin_router(state: Arc<IngressState>) -> Router {
    let layer = axum::middleware::from_fn_with_state(Arc::clone(&state), access::admin);
    finish(
        Router::new()
            .route("/v1/users/{id}", get(writes::get_user))
            .route("/admin/fault", post(ops::fault))
            .route("/admin/models", get(models::list))
            .route("/admin/models/reload", post(models::reload))
            .route("/admin/experiments", get(models::experiments))
            .route("/cluster", get(ops::cluster)),
    )
    .layer(layer)
    .with_state(state)
}

/// The JSON answers of an unknown route and of a method a route does not take.
fn finish(router: Router<Arc<IngressState>>) -> Router<Arc<IngressState>> {
    router
        .fallback(|| async { Refusal::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            let mut r = Refusal::new(ErrorCode::BadRequest, "method not allowed on this route")
                .into_response();
            *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            r
        })
}
