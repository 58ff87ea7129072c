//! Reading a JSON request body: the content type, the size limit (declared and actual)
//! and the parse, each refused with its own code. Every route with a body uses it; the
//! caller bounds the time it may take (a body that trickles in spends its budget).
//! [`PathId`]: a route's `{id}`, refused as JSON like the rest when it is not UTF-8.

use super::state::Refusal;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use recd_runtime::{ErrorCode, RecdError};
use serde::de::DeserializeOwned;

/// The `{id}` segment of a route, percent-decoded.
pub(super) struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(e) => Err(RecdError::bad_request(format!("path: {}", e.body_text())).into()),
        }
    }
}

/// The body as `T`, at most `limit` bytes of `application/json`.
pub(super) async fn read_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<T, RecdError> {
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
    serde_json::from_slice(&bytes)
        .map_err(|e| RecdError::bad_request(format!("invalid json body: {e}")))
}
