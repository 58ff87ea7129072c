//! Cluster membership over ractor_cluster: this node's `NodeServer`, the seeds it joins
//! (and re-joins with backoff: ractor_cluster never reconnects by itself), and the live
//! member list (`/cluster`, `recd_cluster_members`). Placement does not follow it: it
//! comes from the configured roster ([`crate::placement`]); routing follows the process
//! groups and the heartbeat ([`crate::peers`]).
//!
//! ```text
//! NodeServer ── session events ──► Membership (names of authenticated peers + self)
//!     ▲                                   │
//!     └── seed loop: connect, back off ◄──┘ (reconnects whenever a seed is not a member)
//! ```
//!
//! A peer with another cookie never authenticates and so never becomes a member; with
//! `cluster.tls` ([`tls`]) a peer without a certificate from the cluster's CA never gets
//! as far as the cookie. Nodes connect only to their seeds (`Isolated`: ractor_cluster's
//! transitive dialling is plaintext), so the seeds name every node.

pub mod tls;

use crate::config::ClusterConfig;
use crate::peers::Peers;
use anyhow::Context;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{
    IncomingEncryptionMode, NodeEventSubscription, NodeServer, NodeServerMessage,
};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tls::ClusterTls;
use tokio::task::JoinHandle;

/// Live members of the cluster, by node name (`cluster.node_name`), this node included. Tracked per
/// authenticated session: a peer stays a member while any session to it is open
/// (ractor_cluster closes duplicate sessions between the same two nodes).
pub struct Membership {
    me: String,
    sessions: RwLock<HashMap<u64, String>>,
}

impl Membership {
    /// Membership of a node called `me` with no peers yet.
    pub fn new(me: String) -> Arc<Self> {
        Arc::new(Self {
            me,
            sessions: RwLock::new(HashMap::new()),
        })
    }

    /// This node's member name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// All live members, sorted, this node included.
    pub fn members(&self) -> Vec<String> {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        let mut all: BTreeSet<String> = sessions.values().cloned().collect();
        all.insert(self.me.clone());
        all.into_iter().collect()
    }

    /// The sessions (ractor_cluster node ids) open to member `name`.
    pub fn sessions_of(&self, name: &str) -> Vec<u64> {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        (sessions.iter())
            .filter(|(_, n)| *n == name)
            .map(|(&id, _)| id)
            .collect()
    }

    /// The member name of session `node` (a ractor_cluster node id).
    pub fn name_of(&self, node: u64) -> Option<String> {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        sessions.get(&node).cloned()
    }

    fn opened(&self, session: u64, peer: &str) {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        let new = !sessions.values().any(|n| n == peer);
        sessions.insert(session, peer.to_owned());
        if new {
            tracing::info!(peer, "cluster member joined");
        }
    }

    fn closed(&self, session: u64) {
        let mut sessions = self.sessions.write().unwrap_or_else(|p| p.into_inner());
        if let Some(peer) = sessions.remove(&session) {
            if !sessions.values().any(|n| *n == peer) {
                tracing::warn!(peer, "cluster member left");
            }
        }
    }
}

struct Events(Arc<Membership>, Arc<Peers>);

/// The peer's node name (ractor_cluster announces `name@host`).
fn peer_name(ses: &NodeServerSessionInformation) -> Option<String> {
    let full = &ses.peer_name.as_ref()?.name;
    Some(
        full.split_once('@')
            .map_or(full.as_str(), |(n, _)| n)
            .to_owned(),
    )
}

impl NodeEventSubscription for Events {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.0.closed(ses.node_id);
        self.1.forget(ses.node_id);
    }

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        if let Some(name) = peer_name(&ses) {
            self.0.opened(ses.node_id, &name);
        }
    }
}

/// A running cluster endpoint: the node server, its seed loops and the evictor.
pub struct Cluster {
    /// Live members.
    pub membership: Arc<Membership>,
    /// Health and load of the peers (the heartbeat and routing share it).
    pub peers: Arc<Peers>,
    server: ActorRef<NodeServerMessage>,
    seeders: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the node server on `cluster.listen` and joins the seeds.
    pub async fn start(config: &ClusterConfig) -> anyhow::Result<Self> {
        let listen: SocketAddr = config
            .listen
            .as_deref()
            .context("cluster.listen is not set")?
            .parse()
            .context("cluster.listen")?;
        let membership = Membership::new(config.node_name.clone());
        let peers = Peers::new(
            Duration::from_millis(config.heartbeat_timeout_ms),
            config.max_in_flight_per_peer,
        );
        let tls = match &config.tls {
            Some(files) => Some(ClusterTls::load(files)?),
            None => {
                tracing::warn!(%listen, "cluster.tls is not set: the cluster port speaks PLAINTEXT (loopback development only)");
                None
            }
        };
        // with TLS recd accepts peers itself (tls.rs); ractor_cluster's listener then sits
        // on an ephemeral loopback port, encrypted too, and is announced as the real one
        let (port, bind_ip, incoming) = match &tls {
            Some(t) => (
                0,
                std::net::Ipv4Addr::LOCALHOST.into(),
                Some(IncomingEncryptionMode::Tls(t.acceptor())),
            ),
            None => (listen.port(), listen.ip(), None),
        };
        let accept = match tls {
            Some(_) => Some(
                tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("binding the cluster port {listen}"))?,
            ),
            None => None,
        };
        let server = NodeServer::new(
            port,
            config.cookie.clone(),
            config.node_name.clone(),
            config.hostname.clone(),
            incoming,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr(bind_ip);
        let (server, _) = Actor::spawn(None, server, ())
            .await
            .map_err(|e| anyhow::anyhow!("starting the cluster node server on {listen}: {e:?}"))?;
        let mut tasks = Vec::new();
        if let (Some(t), Some(accept)) = (&tls, accept) {
            let _ = server.cast(NodeServerMessage::PortChanged {
                port: listen.port(),
            });
            tasks.push(tokio::spawn(t.clone().serve(accept, server.clone())));
            tasks.push(tokio::spawn(t.clone().watch()));
        }
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "recd-membership".into(),
                subscription: Box::new(Events(Arc::clone(&membership), Arc::clone(&peers))),
            })
            .context("subscribing to cluster events")?;
        let evict_after = Duration::from_millis(config.heartbeat_timeout_ms * EVICT_AFTER_TIMEOUTS);
        let evictor = tokio::spawn(evict_loop(server.clone(), Arc::clone(&peers), evict_after));
        let seeders = config
            .seeds
            .iter()
            .filter(|s| s.as_str() != listen.to_string())
            .map(|seed| {
                let me = format!("{}:{}", config.hostname, listen.port());
                tokio::spawn(join_loop(
                    server.clone(),
                    tls.clone(),
                    Arc::clone(&membership),
                    seed.clone(),
                    me,
                ))
            })
            .chain(std::iter::once(evictor))
            .chain(tasks)
            .collect();
        tracing::info!(%listen, node = membership.me(), tls = tls.is_some(), "cluster listening");
        Ok(Self {
            membership,
            peers,
            server,
            seeders,
        })
    }

    /// Leaves the cluster: stops the seed loops and the node server.
    pub async fn stop(self) {
        for s in self.seeders {
            s.abort();
        }
        let _ = self
            .server
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
    }
}

/// A session whose peer has answered no heartbeat for this many heartbeat timeouts is
/// closed, so that the seed loops (ours or the peer's) open a fresh one: a partition
/// that heals leaves the old TCP connection hung, and ractor_cluster never notices.
const EVICT_AFTER_TIMEOUTS: u64 = 4;

/// Closes sessions to peers silent for longer than `after` (see [`EVICT_AFTER_TIMEOUTS`]).
async fn evict_loop(server: ActorRef<NodeServerMessage>, peers: Arc<Peers>, after: Duration) {
    loop {
        tokio::time::sleep(after / 4).await;
        let Some(sessions) = sessions(&server).await else {
            continue;
        };
        for s in sessions.values() {
            let Some(silent) = peers.silent_for(s.node_id) else {
                continue;
            };
            if silent > after {
                let peer = peer_name(s).unwrap_or_default();
                tracing::warn!(%peer, silent_ms = silent.as_millis() as u64, "closing the session of a silent peer");
                s.actor.stop(Some("no heartbeat answered".into()));
                peers.forget(s.node_id);
            }
        }
    }
}

/// Keeps a session to `seed` open: connects, and reconnects with capped exponential
/// backoff whenever the seed is not a member. The seed's member name is learned from
/// the session this loop opened, so a session the seed opened to us also counts. A seed
/// given by name (a StatefulSet's `recd-0.recd-cluster:7700`) is resolved on every
/// round, and a seed that resolves to this node (`me`: `cluster.hostname` and the
/// listen port) is left alone.
async fn join_loop(
    server: ActorRef<NodeServerMessage>,
    tls: Option<ClusterTls>,
    membership: Arc<Membership>,
    seed: String,
    me: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut name: Option<String> = None;
    loop {
        // the common case costs no DNS: the seed is known and a member
        let member = |name: &Option<String>| {
            (name.as_ref()).is_some_and(|n| membership.members().contains(n))
        };
        if member(&name) {
            backoff = Duration::from_millis(100);
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let addrs = resolve(&seed).await;
        let mine = resolve(&me).await;
        if addrs.iter().any(|a| mine.contains(a)) {
            tracing::debug!(%seed, "seed is this node");
            return;
        }
        let Some(sessions) = sessions(&server).await else {
            tokio::time::sleep(backoff).await;
            continue;
        };
        let mut direct = None;
        for s in sessions.values() {
            if is_seed(s, &seed, &addrs).await {
                direct = Some(s);
                break;
            }
        }
        if let Some(s) = direct {
            name = peer_name(s).or(name);
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let connected = match &tls {
            Some(tls) => tls.connect(&server, &seed).await,
            None => {
                let connect = ractor_cluster::client_connect(&server, seed.as_str());
                match tokio::time::timeout(Duration::from_secs(2), connect).await {
                    Ok(r) => r.map_err(anyhow::Error::from),
                    Err(_) => Err(anyhow::anyhow!("connect timed out")),
                }
            }
        };
        if let Err(e) = connected {
            tracing::debug!(%seed, error = %e, "seed not reachable");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Whether session `s` is with `seed` (resolved to `addrs`): dialled at that address, or
/// opened by the seed itself, which announces its `hostname:port` (a session the seed
/// opened counts, else both sides would keep dialling and ractor_cluster would keep
/// closing the duplicate).
async fn is_seed(s: &NodeServerSessionInformation, seed: &str, addrs: &[SocketAddr]) -> bool {
    let dialled = |a: &str| a == seed || a.parse::<SocketAddr>().is_ok_and(|a| addrs.contains(&a));
    if dialled(&s.peer_addr) {
        return true;
    }
    let Some(announced) = s.peer_name.as_ref().map(|n| n.connection_string.as_str()) else {
        return false;
    };
    dialled(announced) || resolve(announced).await.iter().any(|a| addrs.contains(a))
}

/// The node server's open sessions; `None` (logged) when it does not answer within 1 s.
async fn sessions(
    server: &ActorRef<NodeServerMessage>,
) -> Option<HashMap<u64, NodeServerSessionInformation>> {
    match ractor::call_t!(server, NodeServerMessage::GetSessions, 1_000) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "the cluster node server did not list its sessions");
            None
        }
    }
}

/// The addresses `host:port` resolves to (none when it does not resolve within 1 s).
async fn resolve(host_port: &str) -> Vec<SocketAddr> {
    let lookup = tokio::net::lookup_host(host_port.to_owned());
    match tokio::time::timeout(Duration::from_secs(1), lookup).await {
        Ok(Ok(addrs)) => addrs.collect(),
        _ => Vec::new(),
    }
}
