//! `NodeReplicas`: the [`Replicas`] of a node — its own [`LocalStages`] when they serve
//! the target, and every peer endpoint in the target's process group that is up
//! (heartbeat), each with its load from `Peers`. Groups are read on every call, so a
//! restarted peer's new actor id is picked up. Also what `/cluster` and the heartbeat's
//! gauges show as the live replicas of a shard.

use super::peer::{PeerNet, PeerStage};
use super::router::{Replica, Replicas};
use super::wire::{shard_group, RANKER_GROUP};
use crate::stage::local::LocalStages;
use crate::stage::{Stage, Target};
use ractor::ActorRef;
use recd_runtime::cluster::Membership;
use recd_runtime::placement::ShardKind;
use std::sync::Arc;

/// This node's replicas of every target.
pub struct NodeReplicas {
    local: Arc<LocalStages>,
    as_stage: Arc<dyn Stage>,
    /// Peers, when the node runs in a cluster.
    net: Option<Arc<PeerNet>>,
    membership: Arc<Membership>,
    /// Process-group names per shard, `[features, index]` (built once, not per call).
    groups: [Vec<String>; 2],
    ranker_group: String,
}

impl NodeReplicas {
    /// Replicas over this node's stages and, in a cluster (`net`), its peers.
    pub fn new(
        local: Arc<LocalStages>,
        net: Option<Arc<PeerNet>>,
        membership: Arc<Membership>,
    ) -> Self {
        let groups = |kind, n| (0..n).map(|s| shard_group(kind, s)).collect();
        let groups = [
            groups(ShardKind::Features, local.features.total()),
            groups(ShardKind::Index, local.index.total()),
        ];
        Self {
            as_stage: Arc::clone(&local) as Arc<dyn Stage>,
            local,
            net,
            membership,
            groups,
            ranker_group: RANKER_GROUP.to_owned(),
        }
    }

    /// Names of the members serving shard `s` of `kind` now: this node if it holds a live
    /// replica, and each peer in the shard's group that is up.
    pub fn live_replicas(&self, kind: ShardKind, s: usize) -> Vec<String> {
        let target = match kind {
            ShardKind::Index => Target::Index(s),
            ShardKind::Features => Target::Features(s),
        };
        let mut names: Vec<String> = (self.local.serves(target))
            .then(|| self.membership.me().to_owned())
            .into_iter()
            .chain(
                (self.peers(target).into_iter())
                    .filter_map(|(_, node, _)| self.membership.name_of(node)),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn group(&self, target: Target) -> Option<&String> {
        match target {
            Target::Features(s) => self.groups[0].get(s),
            Target::Index(s) => self.groups[1].get(s),
            Target::Ranker => Some(&self.ranker_group),
        }
    }

    /// Endpoints serving `target` on peers that are up, with their load.
    fn peers(
        &self,
        target: Target,
    ) -> Vec<(ActorRef<super::wire::EndpointMessage>, u64, (usize, u64))> {
        let (Some(net), Some(group)) = (&self.net, self.group(target)) else {
            return Vec::new();
        };
        ractor::pg::get_members(group)
            .into_iter()
            .filter(|c| !c.get_id().is_local())
            .filter_map(|c| {
                let node = c.get_id().node();
                let load = net.peers.load_if_up(node)?;
                Some((ActorRef::from(c), node, load))
            })
            .collect()
    }
}

impl Replicas for NodeReplicas {
    fn replicas(&self, target: Target) -> Vec<Replica> {
        let mut out = Vec::new();
        if self.local.serves(target) {
            out.push(Replica {
                stage: Arc::clone(&self.as_stage),
                local: true,
                in_flight: 0,
                ewma_us: 0,
            });
        }
        let Some(net) = &self.net else {
            return out;
        };
        for (endpoint, node, (in_flight, ewma_us)) in self.peers(target) {
            let stage = PeerStage {
                endpoint,
                node,
                net: Arc::clone(net),
            };
            out.push(Replica {
                stage: Arc::new(stage),
                local: false,
                in_flight,
                ewma_us,
            });
        }
        out
    }
}
