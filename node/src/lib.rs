//! recd-node: starts the roles of one node and shuts them down in order.
//!
//! [`Node::start`] brings a node up in this order: the cluster endpoint (node server,
//! seed loops) when `cluster.listen` is set → the placement of shards over the roster →
//! the HTTP ingress (so `/healthz` answers and `/readyz` says 503 while loading) → the
//! catalogue (generated first if the data folder is empty) → the index shards placed
//! here (snapshot loaded, or built and saved) → the supervised pools of this node's
//! roles (feature shards, index shards, rankers) → the remote endpoint and heartbeat
//! (peers find the shards once the endpoint joins their process groups) → pipeline
//! workers and gateway (ingress role) → ready. [`Node::shutdown`] reverses it: not
//! ready → HTTP drained → gateway → pipeline → heartbeat, endpoint (leaving the groups)
//! → shard pools → the cluster.
//!
//! Supervision tree (each pool restarts its workers, see `recd_runtime::pool`; the root
//! marks the node unhealthy when one of its children dies, `recd_runtime::pool::root`):
//! ```text
//! RootSupervisor ─┬─ PoolSupervisor("ingress")   ── Ingress × 1  (every node: probes; restarted on the same sockets)
//!                 ├─ PoolSupervisor("gateway")   ── Gateway × 1            (ingress role)
//!                 ├─ PoolSupervisor("pipeline")  ── PipelineWorker × n     (ingress role)
//!                 ├─ PoolSupervisor("heartbeat") ── Heartbeat × 1          (in a cluster)
//!                 ├─ PoolSupervisor("endpoint")  ── Endpoint × 1           (in a cluster)
//!                 ├─ PoolSupervisor("features")  ── FeatureShard × shards placed here
//!                 ├─ PoolSupervisor("index")     ── IndexShard × shards placed here
//!                 └─ PoolSupervisor("ranker")    ── Ranker × ranker.workers (ranker role)
//! ```

pub mod bench_model;
pub mod certs;
pub mod commands;
pub mod import;
pub mod import_items;
mod node;
mod roles;
mod stores;

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
