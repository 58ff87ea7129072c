//! The model and experiment admin routes: `GET /admin/models` (what this node's rankers
//! serve), `POST /admin/models/reload` (scan the repository now; answers what loaded,
//! what was refused and why, and what serves after; the scan runs on the loader
//! thread), and `GET /admin/experiments` (the experiment, what each variant binds, and
//! the shadow variant's comparison with the primaries so far).

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

pub(super) async fn experiments(State(st): State<Arc<IngressState>>) -> Response {
    let e = &st.ab.experiment;
    let shadow = (e.shadow.as_ref()).map(|sh| {
        serde_json::json!({
            "variant": sh.variant,
            "fraction_percent": sh.fraction_percent,
            "compared": st.shadow.as_ref().map(|s| s.summary()),
        })
    });
    Json(serde_json::json!({
        "experiment": e.name,
        "split_percent": e.split_percent,
        "variants": e.variants,
        "shadow": shadow,
    }))
    .into_response()
}
