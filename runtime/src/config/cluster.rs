//! The `cluster` section: who this node is, where it listens for peers, who to join, the
//! roster of nodes with their roles (placement is computed from it), and the transport
//! bounds (heartbeat, in-flight caps, hedging).

use anyhow::bail;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a node runs. Any mix; a node alone runs all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// HTTP ingress, gateway and pipeline workers: takes requests.
    Ingress,
    /// Feature shards (the profile caches placed on this node).
    Features,
    /// Index shards (the ANN shards placed on this node).
    Index,
    /// Re-ranking model workers.
    Ranker,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Ingress, Role::Features, Role::Index, Role::Ranker];
}

/// One node of the roster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name (`cluster.node_name` of that node; a StatefulSet pod name).
    pub name: String,
    /// What it runs (default: everything).
    #[serde(default = "all_roles")]
    pub roles: Vec<Role>,
}

fn all_roles() -> Vec<Role> {
    Role::ALL.to_vec()
}

/// Cluster membership and transport. Off (one node, every role, every shard) unless
/// `listen` is set.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's name (unique in the cluster; a StatefulSet's pod name).
    pub node_name: String,
    /// Host name peers reach this node by.
    pub hostname: String,
    /// Cluster listen address; none runs the node alone.
    pub listen: Option<String>,
    /// Peers to join (`host:port`); any live member will do.
    pub seeds: Vec<String>,
    /// Shared secret of the cluster (set it with `RECD__CLUSTER__COOKIE`; never logged).
    #[serde(skip_serializing)]
    pub cookie: String,
    /// Replicas per shard (capped by the nodes holding that kind of shard).
    pub replicas: usize,
    /// Every node of the cluster with its roles; shards are placed over it. Empty: this
    /// node alone, with every role.
    pub nodes: Vec<NodeSpec>,
    /// How often each peer is pinged.
    pub heartbeat_interval_ms: u64,
    /// A peer with no answered ping for this long is down and routed around.
    pub heartbeat_timeout_ms: u64,
    /// Calls in flight to one peer before it is skipped for another replica.
    pub max_in_flight_per_peer: usize,
    /// Remote calls this node serves at once; more are answered `overloaded`.
    pub max_served_in_flight: usize,
    /// Delay before a second replica is asked; none: that shard kind's observed p95.
    pub hedge_delay_ms: Option<u64>,
    /// Mutual TLS on the cluster port. Required unless `listen` is a loopback address
    /// (development: plaintext, with a warning at start).
    pub tls: Option<TlsFiles>,
}

/// PEM files of the cluster's mutual TLS (cert-manager's `ca.crt`, `tls.crt`, `tls.key`).
/// A peer is admitted only with a certificate the CA signed, and only then is its cookie
/// checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster's CA certificate(s): peers' certificates must chain to it.
    pub ca: PathBuf,
    /// This node's certificate chain (its SANs must cover the names peers dial it by).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
    /// How often the three files are read again; changed contents that load replace the
    /// certificate for new handshakes (cert-manager renews in place). 0: never.
    #[serde(default = "default_tls_reload_ms")]
    pub reload_ms: u64,
}

fn default_tls_reload_ms() -> u64 {
    10_000
}

impl std::fmt::Debug for ClusterConfig {
    /// The cookie is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cookie = if self.cookie.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("ClusterConfig")
            .field("node_name", &self.node_name)
            .field("hostname", &self.hostname)
            .field("listen", &self.listen)
            .field("seeds", &self.seeds)
            .field("cookie", &cookie)
            .field("replicas", &self.replicas)
            .field("nodes", &self.nodes)
            .field("heartbeat_interval_ms", &self.heartbeat_interval_ms)
            .field("heartbeat_timeout_ms", &self.heartbeat_timeout_ms)
            .field("max_in_flight_per_peer", &self.max_in_flight_per_peer)
            .field("max_served_in_flight", &self.max_served_in_flight)
            .field("hedge_delay_ms", &self.hedge_delay_ms)
            .field("tls", &self.tls)
            .finish()
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            node_name: "recd-0".into(),
            hostname: "127.0.0.1".into(),
            listen: None,
            seeds: Vec::new(),
            cookie: String::new(),
            replicas: 2,
            nodes: Vec::new(),
            heartbeat_interval_ms: 250,
            heartbeat_timeout_ms: 1500,
            max_in_flight_per_peer: 64,
            max_served_in_flight: 256,
            hedge_delay_ms: None,
            tls: None,
        }
    }
}

impl ClusterConfig {
    /// The roster: `nodes`, or this node alone with every role.
    pub fn roster(&self) -> Vec<NodeSpec> {
        if self.nodes.is_empty() {
            vec![NodeSpec {
                name: self.node_name.clone(),
                roles: all_roles(),
            }]
        } else {
            self.nodes.clone()
        }
    }

    /// Whether this node runs `role`.
    pub fn has_role(&self, role: Role) -> bool {
        self.roster()
            .iter()
            .any(|n| n.name == self.node_name && n.roles.contains(&role))
    }

    /// Names of the roster nodes that run `role`.
    pub fn nodes_with(&self, role: Role) -> Vec<String> {
        self.roster()
            .into_iter()
            .filter(|n| n.roles.contains(&role))
            .map(|n| n.name)
            .collect()
    }

    /// Whether the cluster port may run without TLS: only on a loopback address.
    pub fn plaintext_allowed(&self) -> bool {
        let listen = self.listen.as_deref().unwrap_or("127.0.0.1:0");
        listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback())
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if let Some(listen) = &self.listen {
            listen
                .parse::<std::net::SocketAddr>()
                .map_err(|e| anyhow::anyhow!("cluster.listen: {e}"))?;
            if self.cookie.is_empty() {
                bail!("cluster.cookie must be set when cluster.listen is (RECD__CLUSTER__COOKIE)");
            }
            if is_placeholder(&self.cookie) {
                bail!("cluster.cookie is the placeholder of the shipped Secret: generate a random one (deploy/k8s/secret.yaml)");
            }
            if let Some(t) = &self.tls {
                if t.reload_ms != 0 && t.reload_ms < 100 {
                    bail!("cluster.tls.reload_ms must be 0 (never) or at least 100");
                }
            }
            if self.tls.is_none() && !self.plaintext_allowed() {
                bail!("cluster.tls must be set when cluster.listen is not a loopback address (plaintext is for loopback development only)");
            }
        }
        let valid_name = |n: &str| !n.is_empty() && !n.contains('@');
        if !valid_name(&self.node_name) {
            bail!("cluster.node_name must be non-empty and without '@'");
        }
        if self.replicas == 0 {
            bail!("cluster.replicas must be > 0");
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if !valid_name(&n.name) || !seen.insert(n.name.as_str()) {
                bail!("cluster.nodes[{i}].name: empty, with '@', or listed twice");
            }
            if n.roles.is_empty() {
                bail!("cluster.nodes[{i}].roles: a node needs at least one role");
            }
        }
        if !self.nodes.is_empty() {
            if !seen.contains(self.node_name.as_str()) {
                bail!(
                    "cluster.node_name {:?} is not in cluster.nodes",
                    self.node_name
                );
            }
            if self.listen.is_none() && self.nodes.len() > 1 {
                bail!("cluster.nodes lists several nodes but cluster.listen is not set");
            }
            for role in Role::ALL {
                if !self.nodes.iter().any(|n| n.roles.contains(&role)) {
                    bail!("cluster.nodes: no node runs the {role:?} role");
                }
            }
        }
        if self.heartbeat_interval_ms == 0
            || self.heartbeat_timeout_ms <= self.heartbeat_interval_ms
            || self.heartbeat_timeout_ms > 60_000
        {
            bail!("cluster.heartbeat_timeout_ms must exceed heartbeat_interval_ms (> 0) and be at most 60000");
        }
        if self.max_in_flight_per_peer == 0 || self.max_served_in_flight == 0 {
            bail!("cluster.max_in_flight_per_peer and max_served_in_flight must be > 0");
        }
        if self.hedge_delay_ms == Some(0) {
            bail!("cluster.hedge_delay_ms must be > 0 (leave it unset for the adaptive p95)");
        }
        Ok(())
    }
}

/// Whether `secret` is a shipped placeholder (`REPLACE-ME`, `CHANGE-ME`) rather than a
/// secret someone generated.
pub fn is_placeholder(secret: &str) -> bool {
    let s = secret.to_ascii_lowercase().replace('_', "-");
    s.contains("replace-me") || s.contains("change-me")
}
