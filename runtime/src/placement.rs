//! Shard placement computed from the roster (`cluster.nodes`, the StatefulSet's stable
//! names), identically on every node: no leader. A node loads the shards placed on it;
//! which replicas are live at a moment is the routing's business, not placement's (see
//! docs/adr/0010).
//!
//! Rendezvous (highest-random-weight) hashing: for shard `s` every member gets the score
//! `h(kind, s, member)`; the `replicas` highest-scoring members hold it, in score order
//! (the first is the preferred replica). Every node that sees the same member set
//! computes the same map, whatever order it learned the members in; when a member
//! leaves, only the shards it held move, and each to the next member in its ranking.

use crate::config::{ClusterConfig, Role};
use crate::hash::{fnv1a64, fnv1a64_from, mix64};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a shard holds: items (index) or users (features).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardKind {
    /// An index shard (items `i % S == s`).
    Index,
    /// A feature shard (users hashed to `s`).
    Features,
}

impl ShardKind {
    /// The lowercase name used in JSON, metric labels and process-group names.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardKind::Index => "index",
            ShardKind::Features => "features",
        }
    }
}

/// Replica sets per shard: `map[kind][s]` lists member names, preferred first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// Shard → replicas, per kind.
    pub map: BTreeMap<ShardKind, Vec<Vec<String>>>,
}

fn score(kind: ShardKind, shard: usize, member: &str) -> u64 {
    let h = fnv1a64_from(fnv1a64(""), &[kind as u8]);
    let h = fnv1a64_from(h, &(shard as u64).to_le_bytes());
    // FNV's low bits are weak: finish with splitmix64's mixer
    mix64(fnv1a64_from(h, member.as_bytes()))
}

impl Placement {
    /// Places `shards[kind]` shards of each kind with `replicas` replicas on `members`
    /// (fewer replicas when there are fewer members: never two on one member).
    pub fn compute(members: &[String], shards: &[(ShardKind, usize)], replicas: usize) -> Self {
        let mut sorted: Vec<&String> = members.iter().collect();
        sorted.sort();
        sorted.dedup();
        let map = shards
            .iter()
            .map(|&(kind, n)| {
                let sets = (0..n)
                    .map(|s| {
                        let mut ranked: Vec<(u64, &String)> =
                            sorted.iter().map(|m| (score(kind, s, m), *m)).collect();
                        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                        ranked
                            .into_iter()
                            .take(replicas)
                            .map(|(_, m)| m.clone())
                            .collect()
                    })
                    .collect();
                (kind, sets)
            })
            .collect();
        Self { map }
    }

    /// The placement of `index` and `features` shards over the roster of `cluster`:
    /// each kind over the nodes with its role.
    pub fn for_cluster(cluster: &ClusterConfig, index: usize, features: usize) -> Self {
        let mut map = BTreeMap::new();
        for (kind, role, n) in [
            (ShardKind::Index, Role::Index, index),
            (ShardKind::Features, Role::Features, features),
        ] {
            let nodes = cluster.nodes_with(role);
            map.extend(Self::compute(&nodes, &[(kind, n)], cluster.replicas).map);
        }
        Self { map }
    }

    /// Shards of `kind` that `member` holds.
    pub fn shards_of(&self, kind: ShardKind, member: &str) -> Vec<usize> {
        self.map
            .get(&kind)
            .map(|sets| {
                (0..sets.len())
                    .filter(|&s| sets[s].iter().any(|m| m == member))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replicas of shard `s` of `kind`, preferred first.
    pub fn replicas(&self, kind: ShardKind, s: usize) -> &[String] {
        self.map
            .get(&kind)
            .and_then(|sets| sets.get(s))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("recd-{i}")).collect()
    }

    const SHARDS: [(ShardKind, usize); 2] = [(ShardKind::Index, 64), (ShardKind::Features, 16)];

    #[test]
    fn same_map_whatever_the_member_order() {
        let a = Placement::compute(&names(5), &SHARDS, 2);
        let mut shuffled = names(5);
        shuffled.reverse();
        shuffled.swap(1, 3);
        assert_eq!(a, Placement::compute(&shuffled, &SHARDS, 2));
    }

    #[test]
    fn replicas_are_distinct_and_capped_by_members() {
        let p = Placement::compute(&names(3), &SHARDS, 2);
        for s in 0..64 {
            let r = p.replicas(ShardKind::Index, s);
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
        }
        let single = Placement::compute(&names(1), &SHARDS, 2);
        assert_eq!(
            single.replicas(ShardKind::Index, 7),
            &["recd-0".to_string()]
        );
    }

    #[test]
    fn each_kind_is_placed_over_the_nodes_with_its_role() {
        use crate::config::{ClusterConfig, NodeSpec, Role};
        let node = |name: &str, roles: &[Role]| NodeSpec {
            name: name.into(),
            roles: roles.to_vec(),
        };
        let cluster = ClusterConfig {
            nodes: vec![
                node("gw", &[Role::Ingress, Role::Ranker]),
                node("a", &[Role::Index, Role::Features]),
                node("b", &[Role::Index]),
                node("c", &[Role::Index, Role::Features]),
            ],
            ..ClusterConfig::default()
        };
        let p = Placement::for_cluster(&cluster, 16, 8);
        assert!(p.shards_of(ShardKind::Index, "gw").is_empty());
        assert!(p.shards_of(ShardKind::Features, "b").is_empty());
        for s in 0..8 {
            let mut r = p.replicas(ShardKind::Features, s).to_vec();
            r.sort();
            assert_eq!(r, ["a", "c"]);
        }
        let held: usize = ["a", "b", "c"]
            .iter()
            .map(|m| p.shards_of(ShardKind::Index, m).len())
            .sum();
        assert_eq!(held, 32, "16 index shards, 2 replicas each");
    }

    #[test]
    fn load_is_spread_over_members() {
        let p = Placement::compute(&names(4), &[(ShardKind::Index, 400)], 2);
        for m in names(4) {
            let held = p.shards_of(ShardKind::Index, &m).len();
            // 800 replicas over 4 members: 200 each on average
            assert!((150..=250).contains(&held), "{m} holds {held}");
        }
    }

    #[test]
    fn a_leaving_member_moves_only_its_own_shards() {
        let before = Placement::compute(&names(4), &[(ShardKind::Index, 200)], 2);
        let after = Placement::compute(&names(3), &[(ShardKind::Index, 200)], 2);
        for s in 0..200 {
            let (b, a) = (
                before.replicas(ShardKind::Index, s),
                after.replicas(ShardKind::Index, s),
            );
            if !b.iter().any(|m| m == "recd-3") {
                assert_eq!(
                    a, b,
                    "shard {s} did not involve the leaver and must not move"
                );
            } else {
                let kept: Vec<_> = b.iter().filter(|m| *m != "recd-3").collect();
                assert!(
                    kept.iter().all(|m| a.contains(m)),
                    "shard {s} keeps its surviving replica"
                );
            }
        }
    }
}
