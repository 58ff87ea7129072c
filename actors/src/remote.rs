//! recd across nodes: the wire messages, the peer side of the stage seam, the replicas of
//! a target, the router that picks among them, the endpoint peers call, the heartbeat.
//!
//! ```text
//! PipelineWorker ─► Router ── over NodeReplicas ─┬─► LocalStages (typed call, no encoding)   local first
//!                                                └─► PeerStage ─ pg "recd.index.3" ─► Endpoint@peer
//!                    (up, under the in-flight cap, least loaded;        └─► its LocalStages
//!                     hedged to a second replica after the kind's p95)
//! Heartbeat ─► every Endpoint in "recd.endpoint": Ping with a deadline ─► Peers
//! ```
//!
//! - [`wire`]: requests/replies, group names, checked conversion to and from the seam.
//! - [`peer`]: the [`crate::stage::Stage`] of one peer's endpoint.
//! - [`replicas`]: this node's replicas of every target (local, peers that are up).
//! - [`router`]: replica order, timeouts, hedging, failover.
//! - [`endpoint`]: the actor other nodes call; joins the groups of what this node holds.
//! - [`heartbeat`]: marks hung or partitioned peers down within the heartbeat timeout.
//! - [`leave`]: a draining node tells every peer to route around it at once.

pub mod endpoint;
pub mod heartbeat;
pub mod leave;
pub mod peer;
pub mod replicas;
pub mod router;
pub mod wire;
