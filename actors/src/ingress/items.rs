//! The item write API: `PUT /v1/items/{id}` (embedding and features; a new id or a
//! replacement) and `DELETE /v1/items/{id}`. One item write at a time per node: made
//! durable in the node's item store, then live in the item overlay (from that moment a
//! deleted item is never answered and an upserted one is scored with its new vectors),
//! then applied to the owning index shard (`id % shards`) so searches find it. Answered
//! only after all three; a shard that did not take it is a 503 to retry (idempotent).

use super::body::PathId;
use super::state::{IngressState, Refusal};
use super::writes::{body, writer};
use crate::data::Schema;
use crate::item_log::ItemWrites;
use crate::items::{ItemRow, MAX_ITEM_ID};
use crate::stage::{Answer, Call};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::{ErrorCode, RecdError};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Body of `PUT /v1/items/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemBody {
    embedding: Vec<f32>,
    #[serde(default)]
    features: Option<Vec<f32>>,
}

fn item_id(id: &str) -> Result<u64, RecdError> {
    match id.parse::<u64>() {
        Ok(n) if n <= MAX_ITEM_ID => Ok(n),
        _ => Err(RecdError::bad_request(format!(
            "item id must be an integer in 0..={MAX_ITEM_ID}"
        ))),
    }
}

fn row(body: ItemBody, schema: Schema) -> Result<ItemRow, RecdError> {
    let feats = body.features.unwrap_or_else(|| vec![0.0; schema.feat_dim]);
    ItemRow::checked(body.embedding, feats, schema).map_err(RecdError::bad_request)
}

/// Store, overlay, index shard — in that order, one item write at a time.
async fn apply(st: &IngressState, id: u64, row: Option<ItemRow>) -> Result<(), RecdError> {
    let (serving, router) = writer(st)?;
    let Some(writes) = &serving.item_writes else {
        return Err(RecdError::new(
            ErrorCode::NotImplemented,
            "item writes need the embedded store on a single node, or the redis backend (features.store.backend: none)",
        ));
    };
    let _one = st.item_writes.lock().await;
    // a delete of a deleted item is applied again (a retry after an index shard that
    // did not take it); one of an item never known is 404
    let known = serving.items.is_live(id) || serving.items.was_deleted(id);
    if row.is_none() && !known {
        return Err(RecdError::new(ErrorCode::NotFound, format!("no item {id}")));
    }
    let row = row.map(Arc::new);
    let store = match &**writes {
        ItemWrites::Local(store) => Arc::clone(store),
        ItemWrites::Shared(log) => {
            let at = (log.append((id, row.clone())).await)
                .map_err(|e| RecdError::unavailable(format!("item log: {e:#}")))?;
            // this node answers with the change from the acknowledgement on; the others
            // within their tail's lag (recd_write_visible_seconds)
            return (log.applied(at, st.write_timeout()).await)
                .map_err(|e| RecdError::unavailable(format!("item {id}: {e:#}: a retry is safe")));
        }
    };
    let durable = row.clone();
    // awaited to the end, the lock held: a commit cut off by a timeout could still land
    // after the next write of this id
    let put = tokio::task::spawn_blocking(move || store.put(id, durable.as_deref())).await;
    match put {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RecdError::unavailable(format!("item store: {e:#}"))),
        Err(e) => return Err(RecdError::unavailable(format!("item store: {e}"))),
    }
    serving.items.set(id, row.clone());
    let shard = (id % router.shards().index as u64) as usize;
    let call = Call::Items {
        shard,
        changes: Arc::new(vec![(id, row)]),
    };
    match (router.call(
        call,
        st.write_priority(super::access::current_trace()),
        st.write_timeout(),
    ))
    .await
    {
        Ok(Answer::Applied(1)) => Ok(()),
        Ok(_) => Err(RecdError::new(
            ErrorCode::Internal,
            "index shard answered out of kind",
        )),
        Err(e) => Err(RecdError::new(
            e.code,
            format!(
                "item {id} is stored and live, but index shard {shard} did not take it ({}): retry",
                e.message
            ),
        )),
    }
}

fn reply(op: &str, st: &IngressState, r: Result<Response, RecdError>) -> Response {
    let outcome = if r.is_ok() { "applied" } else { "failed" };
    st.metrics.writes.with_label_values(&[op, outcome]).inc();
    r.unwrap_or_else(|e| Refusal::from(e).into_response())
}

/// `PUT /v1/items/{id}`.
pub(super) async fn put_item(
    State(st): State<Arc<IngressState>>,
    PathId(id): PathId,
    headers: HeaderMap,
    b: Body,
) -> Response {
    let r = async {
        let id = item_id(&id)?;
        let (serving, _) = writer(&st)?;
        let schema = serving.items.schema();
        let body: ItemBody = body(&st, &headers, b).await?;
        apply(&st, id, Some(row(body, schema)?)).await?;
        Ok(Json(json!({"item_id": id, "stored": true})).into_response())
    }
    .await;
    reply("item_upsert", &st, r)
}

/// `DELETE /v1/items/{id}`.
pub(super) async fn delete_item(
    State(st): State<Arc<IngressState>>,
    PathId(id): PathId,
) -> Response {
    let r = async {
        let id = item_id(&id)?;
        apply(&st, id, None).await?;
        Ok(Json(json!({"item_id": id, "deleted": true})).into_response())
    }
    .await;
    reply("item_delete", &st, r)
}
