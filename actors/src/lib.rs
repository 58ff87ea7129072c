//! recd-actors: the recommendation stages as ractor actors, and their pure logic.
//!
//! ```text
//! HTTP ─► ingress::Ingress ─► gateway::Gateway ─► pipeline::PipelineWorker (pool)
//!                                                    │ remote::router::Router
//!                                                    │   over the stage seam (stage::Stage):
//!                                                    │   stage::local::LocalStages or a peer's
//!                                                    ├─► features::shard::FeatureShard[f]
//!                                                    ├─► candidates::shard::IndexShard[0..S]
//!                                                    └─► ranker::actor::Ranker (pool)
//! ```
//!
//! Stages (`features`, `candidates`, `ranker`) never import each other: what crosses them
//! is in [`types`], and every call between them goes through [`stage`].
//!
//! - [`types`]: profiles, candidates, score requests — the values stages exchange.
//! - [`stage`]: the seam: `Call`/`Answer`, the `Stage` trait, the local implementation.
//! - [`data`], [`datagen`]: the catalogue file format (docs/workload.md) and its generator.
//! - [`features`]: derived user profiles, the TTL cache, the feature shard actor.
//! - [`candidates`]: usearch index shards, snapshot, merge; the index shard actor.
//! - [`ranker`]: the MLP over SGEMM; the ranker actor.
//! - [`experiments`]: A/B assignment by hashing.
//! - [`gateway`], [`pipeline`], [`request`]: lanes and batching, the per-batch flow with
//!   its fallbacks, and the request/answer types between them (the pipeline reports a
//!   finished batch through a port of just `request::BatchDone`).
//! - [`ingress`]: the HTTP edge.
//! - [`remote`]: calls across nodes: wire messages, the peer side of the seam, the
//!   replicas of a target, the router that picks among them (local first), the endpoint
//!   peers call, the heartbeat.
//!
//! CPU-heavy work (search, scoring) runs on `recd_runtime::compute::ComputePool`; the
//! pools are supervised by `recd_runtime::pool::PoolSupervisor`.
#![warn(missing_docs, unreachable_pub)]

pub mod candidates;
pub mod data;
pub mod datagen;
pub mod experiments;
pub mod features;
pub mod gateway;
pub mod ingress;
pub mod item_log;
pub mod items;
pub mod kernel;
pub mod pipeline;
pub mod ranker;
pub mod redb_file;
pub mod remote;
pub mod request;
pub mod stage;
#[cfg(test)]
mod test_data;
pub mod types;
