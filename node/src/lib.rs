//! recd-node: starts the roles of one node and shuts them down in order.
//!
//! [`Node::start`] brings a node up in this order: the HTTP ingress (so `/healthz`
//! answers and `/readyz` says 503 while loading) → the catalogue (generated first if
//! the data folder is empty) → index shards (snapshot loaded, or built and saved) →
//! the supervised pools (feature shards, index shards, rankers, pipeline workers) →
//! the gateway → ready. [`Node::shutdown`] reverses it: not ready → HTTP drained →
//! gateway → pipeline → shard pools.
//!
//! Supervision tree (each pool restarts its workers, see `recd_runtime::pool`):
//! ```text
//! node ─┬─ Ingress            (HTTP listener task)
//!       ├─ PoolSupervisor("gateway")  ── Gateway × 1 (lanes, batching)
//!       ├─ PoolSupervisor("pipeline") ── PipelineWorker × gateway.pipeline_workers
//!       ├─ PoolSupervisor("features") ── FeatureShard × features.shards
//!       ├─ PoolSupervisor("index")    ── IndexShard × index.shards
//!       └─ PoolSupervisor("ranker")   ── Ranker × ranker.workers
//! ```

pub mod commands;
mod node;

pub use node::Node;

/// Runs a node until `shutdown` resolves, then stops it in order.
pub async fn run(
    config: recd_runtime::config::Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    shutdown.await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(())
}
