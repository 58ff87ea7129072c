//! The `Heartbeat` actor: every `cluster.heartbeat_interval_ms` it pings the endpoint of
//! each peer (one ping in flight per peer, with the heartbeat timeout as its deadline)
//! and records answers in `Peers`; a peer silent for longer than the timeout is down and
//! the router stops using it (ractor_cluster itself never notices a hung peer). Each tick
//! also refreshes `recd_peer_up` and `recd_shard_live_replicas`.

use super::replicas::NodeReplicas;
use super::wire::{EndpointMessage, Frame, Reply, Request, ENDPOINT_GROUP};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use recd_runtime::cluster::Membership;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::placement::ShardKind;
use recd_runtime::pool::WorkerFactory;
use recd_runtime::protocol::codec::{decode, encode};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Messages of the heartbeat.
pub enum HeartbeatMessage {
    /// Ping every peer not already being pinged.
    Tick,
}

// Local messages only (ractor's cluster feature needs every message type to opt in)
impl ractor::Message for HeartbeatMessage {}

/// Start arguments (and pool factory) of the heartbeat.
#[derive(Clone)]
pub struct HeartbeatArgs {
    /// Ping period.
    pub interval: Duration,
    /// Ping deadline (the down bound).
    pub timeout: Duration,
    /// Where answers are recorded.
    pub peers: Arc<Peers>,
    /// Peer names for the metrics.
    pub membership: Arc<Membership>,
    /// For the live-replica gauges.
    pub replicas: Arc<NodeReplicas>,
    /// Shards per kind (index, features).
    pub shards: (usize, usize),
    /// Node metrics.
    pub metrics: Arc<Metrics>,
}

/// The heartbeat actor.
pub struct Heartbeat;

/// Its state: the arguments and the peers with a ping in flight.
pub struct HeartbeatState {
    args: HeartbeatArgs,
    pinging: Arc<Mutex<HashSet<u64>>>,
}

impl WorkerFactory for HeartbeatArgs {
    type Worker = Heartbeat;
    fn make(&self, _slot: usize) -> (Heartbeat, HeartbeatArgs) {
        (Heartbeat, self.clone())
    }
}

impl Actor for Heartbeat {
    type Msg = HeartbeatMessage;
    type State = HeartbeatState;
    type Arguments = HeartbeatArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HeartbeatMessage>,
        args: HeartbeatArgs,
    ) -> Result<HeartbeatState, ActorProcessingErr> {
        myself.send_interval(args.interval, || HeartbeatMessage::Tick);
        Ok(HeartbeatState {
            args,
            pinging: Arc::new(Mutex::new(HashSet::new())),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<HeartbeatMessage>,
        HeartbeatMessage::Tick: HeartbeatMessage,
        st: &mut HeartbeatState,
    ) -> Result<(), ActorProcessingErr> {
        let ping = encode(&Request::Ping)?;
        for cell in ractor::pg::get_members(&ENDPOINT_GROUP.to_owned()) {
            let id = cell.get_id();
            if id.is_local() {
                continue;
            }
            let node = id.node();
            st.args.peers.track(node);
            if !st
                .pinging
                .lock()
                .map(|mut p| p.insert(node))
                .unwrap_or(false)
            {
                continue;
            }
            let (peers, pinging, timeout) = (
                Arc::clone(&st.args.peers),
                Arc::clone(&st.pinging),
                st.args.timeout,
            );
            let endpoint: ActorRef<EndpointMessage> = cell.into();
            let bytes = ping.clone();
            tokio::spawn(async move {
                let r = endpoint
                    .call(
                        |reply| EndpointMessage::Call(Frame(bytes), reply),
                        Some(timeout),
                    )
                    .await;
                if let Ok(CallResult::Success(Frame(b))) = r {
                    if matches!(decode::<Reply>(&b), Ok(Reply::Pong)) {
                        peers.heard(node);
                    }
                }
                if let Ok(mut p) = pinging.lock() {
                    p.remove(&node);
                }
            });
        }
        refresh_gauges(&st.args);
        Ok(())
    }
}

fn refresh_gauges(a: &HeartbeatArgs) {
    for p in a.peers.snapshot() {
        if let Some(name) = a.membership.name_of(p.node) {
            a.metrics
                .peer_up
                .with_label_values(&[&name])
                .set(i64::from(p.up));
        }
    }
    let (index, features) = a.shards;
    for (kind, n) in [(ShardKind::Index, index), (ShardKind::Features, features)] {
        for s in 0..n {
            let live = a.replicas.live_replicas(kind, s).len() as i64;
            a.metrics
                .shard_live_replicas
                .with_label_values(&[kind.as_str(), &s.to_string()])
                .set(live);
        }
    }
}
