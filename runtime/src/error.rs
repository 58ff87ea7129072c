//! The closed error-code set of recd, turned into HTTP statuses only at the edge.

use serde::{Deserialize, Serialize};

/// Every error recd reports maps to one of these codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed or invalid input (400).
    BadRequest,
    /// No API key, or one no tenant holds; or no admin token (401).
    Unauthenticated,
    /// The key's tenant lacks the scope the route needs (403).
    Forbidden,
    /// Body larger than the configured limit (413).
    PayloadTooLarge,
    /// Content type is not JSON (415).
    UnsupportedMediaType,
    /// Over the admitted request rate (429).
    RateLimited,
    /// Shed under overload (503).
    Overloaded,
    /// Not ready or a required stage is unavailable (503).
    Unavailable,
    /// The request's latency budget ran out (504).
    DeadlineExceeded,
    /// Unknown route or resource (404).
    NotFound,
    /// The node is not set up for this operation, e.g. writes without a store (501).
    NotImplemented,
    /// A bug: should never be produced by input (500).
    Internal,
}

impl ErrorCode {
    /// HTTP status for this code.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::RateLimited => 429,
            ErrorCode::Overloaded | ErrorCode::Unavailable => 503,
            ErrorCode::DeadlineExceeded => 504,
            ErrorCode::NotImplemented => 501,
            ErrorCode::Internal => 500,
        }
    }

    /// Stable snake_case name used in JSON bodies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotImplemented => "not_implemented",
            ErrorCode::Internal => "internal",
        }
    }
}

/// An error with its code and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RecdError {
    /// The closed code.
    pub code: ErrorCode,
    /// Lowercase reason, no trailing period.
    pub message: String,
}

impl RecdError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// 503 shed.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Overloaded, message)
    }

    /// 504 budget spent.
    pub fn deadline(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::DeadlineExceeded, message)
    }

    /// 503 unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }

    /// 500 internal (a model that failed to run).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}
