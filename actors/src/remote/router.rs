//! The `Router`: where each shard call of a micro-batch goes. Replicas in order: this
//! node's own actor (a typed call, nothing encoded), then the peers in the shard's
//! process group that are up (heartbeat) and under their in-flight cap, least in flight
//! first, then lowest EWMA latency. A failed attempt (error reply, timeout, channel
//! closed) moves on to the next replica at once; an attempt still out after the hedge
//! delay (`cluster.hedge_delay_ms`, or the kind's observed p95) gets a second replica
//! asked in parallel, and the first answer wins. No replica left: `None`, and the stage
//! degrades (default profile, partial coverage, ANN order).

use super::endpoint::{EndpointMessage, Frame};
use super::wire::{
    candidates_from_wire, priority_to_wire, shard_group, Reply, Request, WireProfile, RANKER_GROUP,
};
use super::LocalShards;
use crate::candidates::index::Candidate;
use crate::candidates::shard::IndexShardMessage;
use crate::features::profile::Profile;
use crate::features::shard::FeatureShardMessage;
use crate::ranker::actor::{RankerMessage, ScoreRequest};
use futures_util::stream::{FuturesUnordered, StreamExt};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use recd_runtime::clock::now;
use recd_runtime::cluster::Membership;
use recd_runtime::compute::Priority;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::placement::ShardKind;
use recd_runtime::pool::PoolSlots;
use recd_runtime::protocol::codec::{decode, encode};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The three kinds of remote call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Features,
    Index,
    Ranker,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Features => "features",
            Kind::Index => "index",
            Kind::Ranker => "ranker",
        }
    }
}

/// Hedge delay before any latency was observed.
const INITIAL_HEDGE: Duration = Duration::from_millis(5);

/// EWMA of a kind's latency and of its absolute deviation: p95 ≈ mean + 2·deviation.
#[derive(Default)]
struct Latency {
    mean_us: f64,
    dev_us: f64,
}

impl Latency {
    fn observe(&mut self, d: Duration) {
        let x = d.as_secs_f64() * 1e6;
        if self.mean_us == 0.0 {
            self.mean_us = x;
            return;
        }
        let err = x - self.mean_us;
        self.mean_us += err / 16.0;
        self.dev_us += (err.abs() - self.dev_us) / 16.0;
    }

    fn p95(&self) -> Option<Duration> {
        (self.mean_us > 0.0)
            .then(|| Duration::from_secs_f64((self.mean_us + 2.0 * self.dev_us) / 1e6))
    }
}

/// Where this node's stages send their shard calls.
pub struct Router {
    /// Feature shards held here.
    pub features: LocalShards<FeatureShardMessage>,
    /// Index shards held here.
    pub index: LocalShards<IndexShardMessage>,
    /// This node's rankers, if it runs any.
    pub ranker: Option<Arc<PoolSlots<RankerMessage>>>,
    membership: Arc<Membership>,
    peers: Arc<Peers>,
    clustered: bool,
    /// Process-group names per shard, `[features, index]` (built once, not per call).
    groups: [Vec<String>; 2],
    ranker_group: String,
    hedge_delay: Option<Duration>,
    latency: [Mutex<Latency>; 3],
    metrics: Arc<Metrics>,
    next_ranker: AtomicUsize,
}

type Attempt<'a, T> = Pin<Box<dyn Future<Output = (Option<T>, Duration)> + Send + 'a>>;

enum Replica<'a, T> {
    Local(Attempt<'a, T>),
    Remote(ActorRef<EndpointMessage>, u64),
}

/// How this node reaches its peers.
pub struct Remote {
    /// Live members (names of peers).
    pub membership: Arc<Membership>,
    /// Peer health and load.
    pub peers: Arc<Peers>,
    /// Whether the node runs in a cluster (else every call is local).
    pub clustered: bool,
    /// Fixed hedge delay; `None`: adaptive.
    pub hedge_delay: Option<Duration>,
}

impl Router {
    /// A router over this node's shards and its peers.
    pub fn new(
        features: LocalShards<FeatureShardMessage>,
        index: LocalShards<IndexShardMessage>,
        ranker: Option<Arc<PoolSlots<RankerMessage>>>,
        remote: Remote,
        metrics: Arc<Metrics>,
    ) -> Self {
        let groups = |kind, n| (0..n).map(|s| shard_group(kind, s)).collect();
        let groups = [
            groups(ShardKind::Features, features.total()),
            groups(ShardKind::Index, index.total()),
        ];
        Self {
            groups,
            ranker_group: RANKER_GROUP.to_owned(),
            features,
            index,
            ranker,
            membership: remote.membership,
            peers: remote.peers,
            clustered: remote.clustered,
            hedge_delay: remote.hedge_delay,
            latency: Default::default(),
            metrics,
            next_ranker: AtomicUsize::new(0),
        }
    }

    /// Profiles of `users` from feature shard `s`; `None` when no replica answered.
    pub async fn lookup(
        &self,
        s: usize,
        users: Vec<(Arc<str>, Duration)>,
        fetch: bool,
        deadline: std::time::Instant,
        timeout: Duration,
    ) -> Option<Vec<Option<Arc<Profile>>>> {
        let n = users.len();
        let local = self.features.get(s).map(|actor| {
            let users = users.clone();
            let msg = move |reply| FeatureShardMessage::Lookup {
                users,
                fetch,
                deadline,
                reply,
            };
            local_call(actor, msg, timeout, Some)
        });
        let request = || Request::Lookup {
            shard: s as u32,
            users: (users.iter())
                .map(|(u, age)| (u.to_string(), age.as_millis().min(u32::MAX as u128) as u32))
                .collect(),
            fetch,
            budget_us: priority_to_wire(Priority { deadline, lane: 0 }).1,
        };
        let parse = |r: Reply| match r {
            Reply::Profiles(p) => Some(
                p.into_iter()
                    .map(|p| p.and_then(|p| Profile::try_from(p).ok()).map(Arc::new))
                    .collect(),
            ),
            _ => None,
        };
        let group = self.group(ShardKind::Features, s);
        let out = self
            .route(Kind::Features, local, group, request, parse, timeout)
            .await;
        out.filter(|p: &Vec<_>| p.len() == n)
    }

    /// The `k` nearest items of each query in index shard `s`; `None` when no replica
    /// answered.
    pub async fn search(
        &self,
        s: usize,
        queries: Arc<Vec<f32>>,
        k: usize,
        priority: Priority,
        timeout: Duration,
    ) -> Option<Vec<Vec<Candidate>>> {
        let n = queries.len() / crate::data::DIM;
        let local = self.index.get(s).map(|actor| {
            let queries = Arc::clone(&queries);
            let msg = move |reply| IndexShardMessage::Search {
                queries,
                k,
                priority,
                reply,
            };
            local_call(actor, msg, timeout, Result::ok)
        });
        let request = || {
            let (lane, budget_us) = priority_to_wire(priority);
            Request::Search {
                shard: s as u32,
                queries: queries.to_vec(),
                k: k as u32,
                lane,
                budget_us,
            }
        };
        let parse = |r: Reply| match r {
            Reply::Candidates(c) => Some(candidates_from_wire(c)),
            _ => None,
        };
        let group = self.group(ShardKind::Index, s);
        let out = self
            .route(Kind::Index, local, group, request, parse, timeout)
            .await;
        out.filter(|lists: &Vec<_>| lists.len() == n)
    }

    /// Scores of each request's candidates; `None` when no ranker answered.
    pub async fn score(
        &self,
        requests: Arc<Vec<ScoreRequest>>,
        priority: Priority,
        timeout: Duration,
    ) -> Option<Vec<Vec<f32>>> {
        let n = requests.len();
        let local = self.local_ranker().map(|actor| {
            let requests = Arc::clone(&requests);
            let msg = move |reply| RankerMessage::Score {
                requests,
                priority,
                reply,
            };
            local_call(actor, msg, timeout, Result::ok)
        });
        let request = || {
            let (lane, budget_us) = priority_to_wire(priority);
            Request::Score {
                requests: (requests.iter())
                    .map(|r| (WireProfile::from(&*r.profile), r.candidates.clone()))
                    .collect(),
                lane,
                budget_us,
            }
        };
        let parse = |r: Reply| match r {
            Reply::Scores(s) => Some(s),
            _ => None,
        };
        let out = self
            .route(
                Kind::Ranker,
                local,
                &self.ranker_group,
                request,
                parse,
                timeout,
            )
            .await;
        out.filter(|s: &Vec<Vec<f32>>| {
            s.len() == n
                && s.iter()
                    .zip(requests.iter())
                    .all(|(s, r)| s.len() == r.candidates.len())
        })
    }

    /// A live ranker of this node, round-robin; `None` without the role or a live one.
    pub fn local_ranker(&self) -> Option<ActorRef<RankerMessage>> {
        let hint = self.next_ranker.fetch_add(1, Ordering::Relaxed);
        self.ranker.as_ref()?.pick(hint)
    }

    /// Names of the members serving shard `s` of `kind` now: this node if it holds a live
    /// replica, and each peer in the shard's group that is up.
    pub fn live_replicas(&self, kind: ShardKind, s: usize) -> Vec<String> {
        let local = match kind {
            ShardKind::Index => self.index.get(s).is_some(),
            ShardKind::Features => self.features.get(s).is_some(),
        };
        let mut names: Vec<String> = local
            .then(|| self.membership.me().to_owned())
            .into_iter()
            .chain(
                self.remote_replicas(self.group(kind, s))
                    .into_iter()
                    .filter_map(|(_, node)| self.membership.name_of(node)),
            )
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The process group of shard `s` of `kind` (`s` < that kind's shard count).
    fn group(&self, kind: ShardKind, s: usize) -> &String {
        let i = match kind {
            ShardKind::Features => 0,
            ShardKind::Index => 1,
        };
        &self.groups[i][s]
    }

    /// Endpoints of `group` on peers that are up, least loaded first.
    fn remote_replicas(&self, group: &String) -> Vec<(ActorRef<EndpointMessage>, u64)> {
        if !self.clustered {
            return Vec::new();
        }
        let mut found: Vec<_> = ractor::pg::get_members(group)
            .into_iter()
            .filter(|c| !c.get_id().is_local())
            .filter_map(|c| {
                let node = c.get_id().node();
                let load = self.peers.load_if_up(node)?;
                Some((load, ActorRef::from(c), node))
            })
            .collect();
        found.sort_by_key(|(load, _, _)| *load);
        found.into_iter().map(|(_, a, n)| (a, n)).collect()
    }

    fn hedge_delay(&self, kind: Kind, timeout: Duration) -> Duration {
        self.hedge_delay
            .or_else(|| self.latency[kind as usize].lock().ok()?.p95())
            .unwrap_or(INITIAL_HEDGE)
            .clamp(Duration::from_millis(1), timeout)
    }

    /// Tries the replicas in order (local first) until one answers, all within
    /// `timeout` from now: a failed attempt moves on at once, a slow one is hedged.
    async fn route<'a, T: Send + 'a>(
        &'a self,
        kind: Kind,
        local: Option<Attempt<'a, T>>,
        group: &String,
        request: impl FnOnce() -> Request,
        parse: impl Fn(Reply) -> Option<T> + Copy + Send + 'a,
        timeout: Duration,
    ) -> Option<T> {
        let give_up = now() + timeout;
        let mut queue: VecDeque<Replica<'a, T>> = local.map(Replica::Local).into_iter().collect();
        queue.extend((self.remote_replicas(group).into_iter()).map(|(a, n)| Replica::Remote(a, n)));
        // encoded when the first remote replica is tried: a local answer needs no bytes
        let mut request = Some(request);
        let mut bytes: Option<Vec<u8>> = None;
        let mut launch = |pending: &mut FuturesUnordered<Attempt<'a, T>>,
                          queue: &mut VecDeque<Replica<'a, T>>| {
            while let Some(replica) = queue.pop_front() {
                let attempt = match replica {
                    Replica::Local(f) => f,
                    Replica::Remote(actor, node) => {
                        if let Some(make) = request.take() {
                            match encode(&make()) {
                                Ok(b) => bytes = Some(b),
                                Err(e) => {
                                    tracing::warn!(kind = kind.label(), error = %e, "remote call not encodable")
                                }
                            }
                        }
                        let Some(bytes) = bytes.clone() else {
                            continue;
                        };
                        let Some(guard) = self.peers.try_acquire(node) else {
                            self.count(kind, "saturated");
                            continue;
                        };
                        let left = give_up.saturating_duration_since(now());
                        timed(async move {
                            let reply = self.call_remote(kind, actor, node, bytes, left).await;
                            drop(guard);
                            reply.and_then(parse)
                        })
                    }
                };
                pending.push(attempt);
                return true;
            }
            false
        };
        let mut pending = FuturesUnordered::new();
        if !launch(&mut pending, &mut queue) {
            return None;
        }
        let give_up_at = tokio::time::Instant::from_std(give_up);
        loop {
            let hedge = self.hedge_delay(kind, timeout);
            let can_hedge = !queue.is_empty();
            tokio::select! {
                done = pending.next() => match done {
                    Some((Some(v), took)) => {
                        if let Ok(mut l) = self.latency[kind as usize].lock() {
                            l.observe(took);
                        }
                        return Some(v);
                    }
                    Some((None, _)) => {
                        if !launch(&mut pending, &mut queue) && pending.is_empty() {
                            return None;
                        }
                    }
                    None => return None,
                },
                _ = tokio::time::sleep(hedge), if can_hedge => {
                    if launch(&mut pending, &mut queue) {
                        self.metrics.remote_hedges.with_label_values(&[kind.label()]).inc();
                    }
                }
                _ = tokio::time::sleep_until(give_up_at) => return None,
            }
        }
    }

    async fn call_remote(
        &self,
        kind: Kind,
        actor: ActorRef<EndpointMessage>,
        node: u64,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Option<Reply> {
        let started = now();
        let r = actor
            .call(
                |reply| EndpointMessage::Call(Frame(bytes), reply),
                Some(timeout),
            )
            .await;
        let (outcome, reply) = match r {
            Ok(CallResult::Success(Frame(b))) => match decode::<Reply>(&b) {
                Ok(Reply::Error { code, message }) => {
                    tracing::debug!(kind = kind.label(), node, %code, %message, "remote call failed");
                    ("error", None)
                }
                Ok(reply) => ("ok", Some(reply)),
                Err(e) => {
                    tracing::warn!(kind = kind.label(), node, error = %e, "undecodable remote reply");
                    ("malformed", None)
                }
            },
            Ok(CallResult::Timeout) => ("timeout", None),
            // ractor often reports a timeout as a closed channel: both mean "next replica"
            _ => ("closed", None),
        };
        if reply.is_some() {
            let took = now().saturating_duration_since(started);
            self.peers.record(node, took);
            self.metrics
                .remote_call_duration
                .with_label_values(&[kind.label()])
                .observe(took.as_secs_f64());
        }
        self.count(kind, outcome);
        reply
    }

    fn count(&self, kind: Kind, outcome: &str) {
        self.metrics
            .remote_calls
            .with_label_values(&[kind.label(), outcome])
            .inc();
    }
}

/// A typed call to a local actor, its reply mapped by `map`, as a timed attempt.
fn local_call<'a, M, R, T>(
    actor: ActorRef<M>,
    msg: impl FnOnce(RpcReplyPort<R>) -> M + Send + 'a,
    timeout: Duration,
    map: impl FnOnce(R) -> Option<T> + Send + 'a,
) -> Attempt<'a, T>
where
    M: ractor::Message,
    R: Send + 'static,
{
    timed(async move { success(actor.call(msg, Some(timeout)).await).and_then(map) })
}

fn timed<'a, T>(f: impl Future<Output = Option<T>> + Send + 'a) -> Attempt<'a, T> {
    Box::pin(async move {
        let t = now();
        let r = f.await;
        (r, now().saturating_duration_since(t))
    })
}

fn success<T, M>(r: Result<CallResult<T>, ractor::MessagingErr<M>>) -> Option<T> {
    match r {
        Ok(CallResult::Success(v)) => Some(v),
        _ => None,
    }
}
