//! The write API (README "Writes"): `POST /v1/events` and `PUT|GET|DELETE
//! /v1/users/{id}`. Each request is read within `features.store.write_timeout_ms`,
//! validated whole before anything is sent (a bad event anywhere refuses the batch,
//! naming it), split by owning feature shard and sent as one `Call::Write` per shard
//! through the router. Answered 200 only once every shard's write is durable; a shard
//! that fails makes the answer an error that says how many were written — retrying the
//! whole batch is safe, event ids are applied once.

use super::body::{read_json, PathId};
use super::state::{IngressState, Refusal, Serving};
use crate::features::shard_of;
use crate::remote::router::Router;
use crate::stage::{Answer, Call};
use crate::types::{EventKind, WriteOp, WriteOutcome};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use recd_runtime::{ErrorCode, RecdError};
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Latest an event's `ts` may be ahead of this node's clock.
const MAX_FUTURE_SECS: u64 = 86_400;

/// Body of `POST /v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsBody {
    events: Vec<EventBody>,
}

/// One event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    event_id: String,
    user_id: String,
    item_id: u64,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default = "one")]
    weight: f32,
    #[serde(default)]
    ts: Option<u64>,
}

fn one() -> f32 {
    1.0
}

/// Body of `PUT /v1/users/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    embedding: Vec<f32>,
    #[serde(default)]
    features: Option<Vec<f32>>,
    #[serde(default)]
    recent_items: Vec<u64>,
}

/// What a write needs once the node serves writes: the serving state and the router.
pub(super) fn writer(st: &IngressState) -> Result<(&Serving, &Arc<Router>), RecdError> {
    let serving =
        (st.serving.get()).ok_or_else(|| RecdError::unavailable("not ready: loading shards"))?;
    if st.draining.load(Ordering::Relaxed) {
        return Err(RecdError::unavailable("shutting down"));
    }
    match &serving.router {
        Some(r) if serving.takes_requests => Ok((serving, r)),
        _ => Err(RecdError::unavailable(
            "this node does not run the ingress role",
        )),
    }
}

/// Reads a write body within the write timeout.
pub(super) async fn body<T: serde::de::DeserializeOwned>(
    st: &IngressState,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, RecdError> {
    let limit = st.store.max_body_bytes;
    tokio::time::timeout(st.write_timeout(), read_json(headers, body, limit))
        .await
        .map_err(|_| RecdError::deadline("write timeout spent reading the request body"))?
}

/// Sends `ops` (all of one user or split by shard) and gathers their outcomes in order.
async fn write(
    st: &IngressState,
    router: &Router,
    ops: Vec<WriteOp>,
) -> Result<Vec<WriteOutcome>, RecdError> {
    let shards = router.shards().features;
    let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); shards];
    for (i, op) in ops.iter().enumerate() {
        by_shard[shard_of(op.user(), shards)].push(i);
    }
    let (timeout, priority) = (
        st.write_timeout(),
        st.write_priority(super::access::current_trace()),
    );
    let calls = by_shard
        .iter()
        .enumerate()
        .filter(|(_, idx)| !idx.is_empty())
        .map(|(s, idx)| {
            let call = Call::Write {
                shard: s,
                ops: Arc::new(idx.iter().map(|&i| ops[i].clone()).collect()),
            };
            async move { (idx, router.call(call, priority, timeout).await) }
        });
    let mut outcomes = vec![None; ops.len()];
    let mut failed: Option<RecdError> = None;
    for (idx, r) in futures_util::future::join_all(calls).await {
        match r {
            Ok(Answer::Written(o)) => idx.iter().zip(o).for_each(|(&i, o)| outcomes[i] = Some(o)),
            Ok(_) => {
                failed = Some(RecdError::new(
                    ErrorCode::Internal,
                    "write answered out of kind",
                ))
            }
            Err(e) => failed = Some(e),
        }
    }
    let op_name = |op: &WriteOp| match op {
        WriteOp::Upsert { .. } => "upsert",
        WriteOp::Delete { .. } => "delete",
        WriteOp::Event { .. } => "event",
    };
    for (op, o) in ops.iter().zip(&outcomes) {
        let outcome = match o {
            Some(WriteOutcome::Applied) => "applied",
            Some(WriteOutcome::Duplicate) => "duplicate",
            Some(WriteOutcome::NotFound) => "not_found",
            None => "failed",
        };
        st.metrics
            .writes
            .with_label_values(&[op_name(op), outcome])
            .inc();
    }
    match failed {
        None => Ok(outcomes.into_iter().flatten().collect()),
        Some(e) => {
            let done = outcomes.iter().flatten().count();
            let message = format!(
                "{} of {} writes were not made ({}); {done} were: retrying the whole request is safe",
                ops.len() - done,
                ops.len(),
                e.message
            );
            Err(RecdError::new(e.code, message))
        }
    }
}

fn reply(r: Result<Response, RecdError>) -> Response {
    r.unwrap_or_else(|e| Refusal::from(e).into_response())
}

/// `POST /v1/events`.
pub(super) async fn events(
    State(st): State<Arc<IngressState>>,
    headers: HeaderMap,
    b: Body,
) -> Response {
    reply(
        async {
            let (serving, router) = writer(&st)?;
            let parsed: EventsBody = body(&st, &headers, b).await?;
            let max = st.store.max_events_per_call;
            if parsed.events.is_empty() || parsed.events.len() > max {
                return Err(RecdError::bad_request(format!(
                    "events: 1..={max} per call"
                )));
            }
            let (now, schema) = (
                recd_runtime::clock::unix_time().as_secs(),
                serving.items.schema(),
            );
            let mut ops = Vec::with_capacity(parsed.events.len());
            for (i, e) in parsed.events.into_iter().enumerate() {
                let at = |m: String| RecdError::bad_request(format!("events[{i}]: {m}"));
                st.check_user_id(&e.user_id).map_err(|e| at(e.message))?;
                let kind = EventKind::parse(&e.kind).ok_or_else(|| {
                    let known: Vec<_> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                    at(format!(
                        "unknown type {:?} (known: {})",
                        e.kind,
                        known.join(", ")
                    ))
                })?;
                let ts = e.ts.unwrap_or(now);
                if ts > now + MAX_FUTURE_SECS {
                    return Err(at(format!("ts {ts} is more than a day ahead")));
                }
                let op = WriteOp::Event {
                    event_id: Arc::from(e.event_id),
                    user: Arc::from(e.user_id),
                    item: e.item_id,
                    kind,
                    weight: e.weight,
                    ts,
                };
                (op.check(
                    schema,
                    &|id| serving.items.is_live(id),
                    st.store.recent_items,
                ))
                .map_err(at)?;
                ops.push(op);
            }
            let n = ops.len();
            let outcomes = write(&st, router, ops).await?;
            let applied = outcomes
                .iter()
                .filter(|o| **o == WriteOutcome::Applied)
                .count();
            Ok(
                Json(json!({"accepted": n, "applied": applied, "duplicates": n - applied}))
                    .into_response(),
            )
        }
        .await,
    )
}

/// `PUT /v1/users/{id}`: the whole profile, replaced.
pub(super) async fn put_user(
    State(st): State<Arc<IngressState>>,
    PathId(id): PathId,
    headers: HeaderMap,
    b: Body,
) -> Response {
    reply(
        async {
            let (serving, router) = writer(&st)?;
            st.check_user_id(&id)?;
            let u: UserBody = body(&st, &headers, b).await?;
            let schema = serving.items.schema();
            let feats = u.features.unwrap_or_else(|| vec![0.0; schema.feat_dim]);
            let op = WriteOp::Upsert {
                user: Arc::from(id.as_str()),
                emb: u.embedding,
                feats,
                recent: u.recent_items,
            };
            (op.check(
                schema,
                &|id| serving.items.is_live(id),
                st.store.recent_items,
            ))
            .map_err(RecdError::bad_request)?;
            write(&st, router, vec![op]).await?;
            Ok(Json(json!({"user_id": id, "stored": true})).into_response())
        }
        .await,
    )
}

/// `DELETE /v1/users/{id}`: erased from the store and the shard's cache.
pub(super) async fn delete_user(
    State(st): State<Arc<IngressState>>,
    PathId(id): PathId,
) -> Response {
    reply(
        async {
            let (_, router) = writer(&st)?;
            st.check_user_id(&id)?;
            let op = WriteOp::Delete {
                user: Arc::from(id.as_str()),
            };
            match write(&st, router, vec![op]).await?.first() {
                Some(WriteOutcome::NotFound) => Err(RecdError::new(
                    ErrorCode::NotFound,
                    format!("no user {id:?}"),
                )),
                _ => Ok(Json(json!({"user_id": id, "erased": true})).into_response()),
            }
        }
        .await,
    )
}

/// `GET /v1/users/{id}`: the profile `/recommend` would use now, read from the store.
pub(super) async fn get_user(State(st): State<Arc<IngressState>>, PathId(id): PathId) -> Response {
    reply(
        async {
            let (_, router) = writer(&st)?;
            st.check_user_id(&id)?;
            let shard = shard_of(&id, router.shards().features);
            let (timeout, priority) = (
                st.write_timeout(),
                st.write_priority(super::access::current_trace()),
            );
            // a zero maximum age skips the cache: the store's truth
            let call = Call::Lookup {
                shard,
                users: vec![(Arc::from(id.as_str()), Duration::ZERO)],
                fetch: true,
            };
            let profile = match router.call(call, priority, timeout).await? {
                Answer::Profiles(mut p) => p.pop().flatten(),
                _ => None,
            }
            .ok_or_else(|| RecdError::unavailable("the feature shard gave no profile"))?;
            Ok(Json(json!({
                "user_id": id,
                "known": profile.known,
                "embedding": &profile.emb,
                "features": &profile.feats,
                "recent_items": profile.recent,
            }))
            .into_response())
        }
        .await,
    )
}
