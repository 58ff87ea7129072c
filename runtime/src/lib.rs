//! recd-runtime: the contracts both ends of recd share and the generic plumbing the
//! recommendation stages are built on. No ANN index or model code lives here.
//!
//! - [`api`], [`error`], [`config`]: HTTP types, the closed error-code set and the
//!   layered config schema, shared by the node and the load generator.
//! - [`lanes`]: bounded priority-lane queues taking turns by weighted fair share
//!   (earliest deadline first inside a lane), shedding the lowest lane first; the
//!   gateway actor owns one.
//! - [`batching`]: the online service-time model and the deadline-sized (or fixed-delay)
//!   batch-closing rule.
//! - [`slo`]: per-lane SLO targets and burn rates.
//! - [`admission`]: the token bucket the ingress applies before the gateway.
//! - [`hash`]: FNV-1a 64 and splitmix64, the hashes every part of recd agrees on.
//! - [`pool`]: supervised actor pools whose workers routers find in `PoolSlots`.
//! - [`compute`]: the bounded thread pool where ANN search and scoring run, off the
//!   tokio workers.
//! - [`cluster`]: the ractor_cluster node server, seed joining with reconnects, and the
//!   live member list.
//! - [`placement`]: shard → replica nodes by rendezvous hashing over the member list,
//!   identical on every node (the cluster's map; no leader).
//! - [`protocol`]: versioned envelopes and the bincode codec for remote messages, with
//!   size limits.
//! - [`metrics`], [`telemetry`]: the `recd_*` Prometheus registry and JSON logging.
//! - [`trace`]: W3C trace context, carried from the request into every remote call.
#![warn(missing_docs, unreachable_pub)]

pub mod admission;
pub mod api;
pub mod batching;
pub mod clock;
pub mod cluster;
pub mod compute;
pub mod config;
pub mod error;
pub mod hash;
pub mod lanes;
pub mod metrics;
pub mod peers;
pub mod placement;
pub mod pool;
pub mod protocol;
pub mod slo;
pub mod telemetry;
pub mod test_util;
pub mod trace;

pub use error::{ErrorCode, RecdError};
