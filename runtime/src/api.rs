//! HTTP API types shared by the ingress actor and the load generator.
//!
//! The request and response bodies of `POST /recommend` (docs/workload.md) and the JSON
//! error body every refusal carries.

use serde::{Deserialize, Serialize};

/// Body of `POST /recommend`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendRequest {
    /// The user to recommend for; unknown ids get the default profile.
    pub user_id: String,
    /// How many items to return (1..=max_topk).
    #[serde(default = "default_topk")]
    pub topk: u32,
    /// Free-form request context (device, timestamp, ...); accepted and logged.
    #[serde(default)]
    pub context: Option<serde_json::Value>,
}

fn default_topk() -> u32 {
    10
}

/// One recommended item.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoredItem {
    /// Item id (row index in the catalogue).
    pub id: u64,
    /// Model score (or ANN inner product when the ranker fell back).
    pub score: f32,
}

/// Body of a successful `POST /recommend`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendResponse {
    /// Echo of the request's user id.
    pub user_id: String,
    /// Exactly `topk` items (fewer only if the catalogue is smaller), score descending.
    pub items: Vec<ScoredItem>,
    /// Experiment variant this request was served under.
    pub variant: String,
    /// The `name@version` that scored the items; `null` when they are in ANN order
    /// (`degraded` says why).
    #[serde(default)]
    pub model: Option<String>,
    /// Stages that fell back (e.g. `["features"]`); empty when nothing degraded.
    pub degraded: Vec<String>,
    /// Fraction of index shards that answered (1.0 when all did).
    pub coverage: f32,
    /// Server-assigned id, also in logs and the `X-Request-Id` header.
    pub request_id: String,
}

/// JSON body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Closed error code (`bad_request`, `overloaded`, ...).
    pub code: String,
    /// Human-readable reason naming the problem.
    pub message: String,
    /// Request id when one was assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}
