//! The model admin routes: `GET /admin/models` (what this node's rankers serve) and
//! `POST /admin/models/reload` (scan the repository now; answers what loaded, what was
//! refused and why, and what serves after). The scan runs on the loader thread.

use super::state::{IngressState, Refusal};
use crate::ranker::loader::ModelLoader;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::ErrorCode;
use std::sync::Arc;

fn loader(st: &IngressState) -> Result<&ModelLoader, Refusal> {
    let serving =
        (st.serving.get()).ok_or_else(|| Refusal::new(ErrorCode::Unavailable, "not ready"))?;
    (serving.models.as_ref())
        .ok_or_else(|| Refusal::new(ErrorCode::NotFound, "this node runs no rankers"))
}

pub(super) async fn list(State(st): State<Arc<IngressState>>) -> Response {
    match loader(&st) {
        Ok(l) => Json(serde_json::json!({ "serving": l.models().serving() })).into_response(),
        Err(r) => r.into_response(),
    }
}

pub(super) async fn reload(State(st): State<Arc<IngressState>>) -> Response {
    let l = match loader(&st) {
        Ok(l) => l,
        Err(r) => return r.into_response(),
    };
    match l.reload().await {
        Ok(report) => Json(report).into_response(),
        Err(e) => Refusal::from(e).into_response(),
    }
}
