//! The `Endpoint` actor: this node's door for other nodes. It joins the process group of
//! every shard this node holds (and `recd.ranker` when it runs rankers), so peers find
//! it with `pg::get_members`; each call is decoded, checked, and forwarded to the local
//! shard actor in a task of its own, bounded by `cluster.max_served_in_flight` (more are
//! answered `overloaded` at once). Bytes that do not decode are counted
//! (`recd_remote_served_total{outcome="malformed"}`) and answered with an error.

use super::router::Router;
use super::wire::{
    candidates_to_wire, deadline_from_wire, shard_group, Reply, Request, WireProfile,
    ENDPOINT_GROUP, MAX_BATCH, RANKER_GROUP,
};
use crate::candidates::shard::IndexShardMessage;
use crate::data::DIM;
use crate::features::profile::Profile;
use crate::features::{shard::FeatureShardMessage, shard_of};
use crate::ranker::actor::{RankerMessage, ScoreRequest};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, BytesConvertable, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use recd_runtime::compute::Priority;
use recd_runtime::metrics::Metrics;
use recd_runtime::placement::ShardKind;
use recd_runtime::pool::WorkerFactory;
use recd_runtime::protocol::codec::{decode, encode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Encoded bytes of a [`Request`] or [`Reply`] (see [`super::wire`]); passed through
/// ractor_cluster untouched, decoded by recd's codec where it can be answered.
pub struct Frame(pub Vec<u8>);

impl BytesConvertable for Frame {
    fn into_bytes(self) -> Vec<u8> {
        self.0
    }
    fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

/// Messages of the endpoint. The variant name is part of the wire: renaming it is a
/// protocol change.
#[derive(RactorClusterMessage)]
pub enum EndpointMessage {
    /// One request, one reply.
    #[rpc]
    Call(Frame, RpcReplyPort<Frame>),
}

/// Most user id bytes a remote lookup accepts.
const MAX_USER_ID: usize = 1024;
/// Most `(query, item)` pairs one search may ask for (keeps the reply under a frame).
const MAX_SEARCH_RESULTS: usize = 500_000;

/// What the endpoint serves from, and its start arguments (a pool of one).
#[derive(Clone)]
pub struct Served {
    /// This node's shards and rankers (the same the local pipeline calls).
    pub router: Arc<Router>,
    /// Items in the catalogue (candidate ids must be below).
    pub items: usize,
    /// Calls served at once.
    pub permits: Arc<Semaphore>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
}

/// The endpoint actor.
pub struct Endpoint;

impl WorkerFactory for Served {
    type Worker = Endpoint;
    fn make(&self, _slot: usize) -> (Endpoint, Served) {
        (Endpoint, self.clone())
    }
}

impl Actor for Endpoint {
    type Msg = EndpointMessage;
    type State = Arc<Served>;
    type Arguments = Served;

    async fn pre_start(
        &self,
        myself: ActorRef<EndpointMessage>,
        served: Served,
    ) -> Result<Arc<Served>, ActorProcessingErr> {
        let mut groups = vec![ENDPOINT_GROUP.to_owned()];
        let r = &served.router;
        groups.extend((r.index.held().iter()).map(|&s| shard_group(ShardKind::Index, s)));
        groups.extend((r.features.held().iter()).map(|&s| shard_group(ShardKind::Features, s)));
        if r.ranker.is_some() {
            groups.push(RANKER_GROUP.to_owned());
        }
        for g in groups {
            ractor::pg::join(g, vec![myself.get_cell()]);
        }
        Ok(Arc::new(served))
    }

    async fn handle(
        &self,
        _myself: ActorRef<EndpointMessage>,
        msg: EndpointMessage,
        served: &mut Arc<Served>,
    ) -> Result<(), ActorProcessingErr> {
        let EndpointMessage::Call(Frame(bytes), reply) = msg;
        let Ok(permit) = Arc::clone(&served.permits).try_acquire_owned() else {
            served.count("any", "overloaded");
            let _ = reply.send(encoded(&Reply::error(
                "overloaded",
                "too many remote calls",
            )));
            return Ok(());
        };
        let served = Arc::clone(served);
        tokio::spawn(async move {
            let answer = served.serve(&bytes).await;
            let _ = reply.send(encoded(&answer));
            drop(permit);
        });
        Ok(())
    }
}

/// The reply's bytes; a reply too large for a frame is answered with that error.
fn encoded(reply: &Reply) -> Frame {
    let bytes = encode(reply).unwrap_or_else(|e| {
        tracing::error!(error = %e, "remote reply not encodable");
        encode(&Reply::error("internal", e.to_string())).expect("a short error encodes")
    });
    Frame(bytes)
}

fn bad(message: impl Into<String>) -> Reply {
    Reply::error("bad_request", message)
}

impl Served {
    fn count(&self, kind: &str, outcome: &str) {
        self.metrics
            .remote_served
            .with_label_values(&[kind, outcome])
            .inc();
    }

    /// Answers one encoded request.
    pub async fn serve(&self, bytes: &[u8]) -> Reply {
        let request = match decode::<Request>(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.count("any", "malformed");
                tracing::warn!(error = %e, "undecodable remote call");
                return bad(e.to_string());
            }
        };
        let (kind, reply) = match request {
            Request::Ping => ("ping", Reply::Pong),
            Request::Lookup {
                shard,
                users,
                fetch,
                budget_us,
            } => (
                "features",
                self.lookup(shard, users, fetch, budget_us).await,
            ),
            Request::Search {
                shard,
                queries,
                k,
                lane,
                budget_us,
            } => (
                "index",
                self.search(shard, queries, k, lane, budget_us).await,
            ),
            Request::Score {
                requests,
                lane,
                budget_us,
            } => ("ranker", self.score(requests, lane, budget_us).await),
        };
        let outcome = match &reply {
            Reply::Error { code, .. } => code.as_str(),
            _ => "ok",
        };
        self.count(kind, outcome);
        reply
    }

    async fn lookup(
        &self,
        shard: u32,
        users: Vec<(String, u32)>,
        fetch: bool,
        budget: u64,
    ) -> Reply {
        let s = shard as usize;
        if users.is_empty() || users.len() > MAX_BATCH {
            return bad(format!("lookup of {} users", users.len()));
        }
        if let Some((u, _)) = users
            .iter()
            .find(|(u, _)| u.len() > MAX_USER_ID || shard_of(u, self.router.features.total()) != s)
        {
            return bad(format!(
                "user {:?} is not owned by feature shard {s}",
                truncate(u)
            ));
        }
        let Some(actor) = self.router.features.get(s) else {
            return Reply::error(
                "unavailable",
                format!("feature shard {s} is not held or not live here"),
            );
        };
        let deadline = deadline_from_wire(budget);
        let users = users
            .into_iter()
            .map(|(u, age)| (Arc::from(u), Duration::from_millis(age.into())))
            .collect();
        let r = actor
            .call(
                |reply| FeatureShardMessage::Lookup {
                    users,
                    fetch,
                    deadline,
                    reply,
                },
                Some(until(deadline)),
            )
            .await;
        match r {
            Ok(CallResult::Success(p)) => Reply::Profiles(
                p.iter()
                    .map(|p| p.as_deref().map(WireProfile::from))
                    .collect(),
            ),
            _ => Reply::error(
                "timeout",
                format!("feature shard {s} did not answer in time"),
            ),
        }
    }

    async fn search(&self, shard: u32, queries: Vec<f32>, k: u32, lane: u8, budget: u64) -> Reply {
        let s = shard as usize;
        let n = queries.len() / DIM;
        if queries.is_empty() || queries.len() % DIM != 0 || n > MAX_BATCH {
            return bad(format!(
                "{} floats are not 1..={MAX_BATCH} queries",
                queries.len()
            ));
        }
        if k == 0 || n * k as usize > MAX_SEARCH_RESULTS {
            return bad(format!("k = {k} for {n} queries"));
        }
        if !queries.iter().all(|x| x.is_finite()) {
            return bad("a query has a non-finite value");
        }
        let Some(actor) = self.router.index.get(s) else {
            return Reply::error(
                "unavailable",
                format!("index shard {s} is not held or not live here"),
            );
        };
        let priority = Priority {
            deadline: deadline_from_wire(budget),
            lane: lane.into(),
        };
        let queries = Arc::new(queries);
        let r = actor
            .call(
                |reply| IndexShardMessage::Search {
                    queries,
                    k: k as usize,
                    priority,
                    reply,
                },
                Some(until(priority.deadline)),
            )
            .await;
        match r {
            Ok(CallResult::Success(Ok(lists))) => Reply::Candidates(candidates_to_wire(&lists)),
            Ok(CallResult::Success(Err(e))) => Reply::error(e.code.as_str(), e.message),
            _ => Reply::error("timeout", format!("index shard {s} did not answer in time")),
        }
    }

    async fn score(&self, requests: Vec<(WireProfile, Vec<u64>)>, lane: u8, budget: u64) -> Reply {
        if requests.is_empty() || requests.len() > MAX_BATCH {
            return bad(format!("score of {} requests", requests.len()));
        }
        let mut checked = Vec::with_capacity(requests.len());
        for (profile, candidates) in requests {
            let profile = match Profile::try_from(profile) {
                Ok(p) => Arc::new(p),
                Err(e) => return bad(e),
            };
            if candidates.len() > MAX_BATCH
                || candidates.iter().any(|&id| id as usize >= self.items)
            {
                return bad("candidate ids must be catalogue items, at most 4096 per request");
            }
            checked.push(ScoreRequest {
                profile,
                candidates,
            });
        }
        let Some(actor) = self.router.local_ranker() else {
            return Reply::error("unavailable", "no live ranker here");
        };
        let priority = Priority {
            deadline: deadline_from_wire(budget),
            lane: lane.into(),
        };
        let requests = Arc::new(checked);
        let r = actor
            .call(
                |reply| RankerMessage::Score {
                    requests,
                    priority,
                    reply,
                },
                Some(until(priority.deadline)),
            )
            .await;
        match r {
            Ok(CallResult::Success(Ok(scores))) => Reply::Scores(scores),
            Ok(CallResult::Success(Err(e))) => Reply::error(e.code.as_str(), e.message),
            _ => Reply::error("timeout", "the ranker did not answer in time"),
        }
    }
}

/// Time left until `deadline` (at least 1 ms: a call needs a timeout).
fn until(deadline: std::time::Instant) -> Duration {
    deadline
        .saturating_duration_since(recd_runtime::clock::now())
        .max(Duration::from_millis(1))
}

fn truncate(s: &str) -> &str {
    let end = (0..=s.len().min(32))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FEAT_DIM;
    use crate::remote::router::Remote;
    use crate::remote::LocalShards;

    /// An endpoint of a node that holds no shard and runs no ranker.
    fn served(metrics: &Arc<Metrics>) -> Served {
        let membership = recd_runtime::cluster::Membership::new("recd-0".into());
        let remote = Remote {
            membership,
            peers: recd_runtime::peers::Peers::new(Duration::from_secs(1), 1),
            clustered: false,
            hedge_delay: None,
        };
        let router = Router::new(
            LocalShards::new(Vec::new(), 2),
            LocalShards::new(Vec::new(), 2),
            None,
            remote,
            Arc::clone(metrics),
        );
        Served {
            router: Arc::new(router),
            items: 100,
            permits: Arc::new(Semaphore::new(4)),
            metrics: Arc::clone(metrics),
        }
    }

    fn code(r: &Reply) -> &str {
        match r {
            Reply::Error { code, .. } => code,
            _ => "ok",
        }
    }

    #[tokio::test]
    async fn untrusted_calls_get_errors_not_panics() {
        let metrics = Arc::new(Metrics::new());
        let s = served(&metrics);
        assert_eq!(code(&s.serve(b"\x01\x00garbage").await), "bad_request");
        assert_eq!(code(&s.serve(&[]).await), "bad_request");
        let malformed = metrics
            .remote_served
            .with_label_values(&["any", "malformed"]);
        assert_eq!(malformed.get(), 2);
        assert_eq!(s.serve(&encode(&Request::Ping).unwrap()).await, Reply::Pong);

        let search = |queries: Vec<f32>, k| Request::Search {
            shard: 0,
            queries,
            k,
            lane: 0,
            budget_us: 10_000,
        };
        for (request, want) in [
            (search(vec![0.1; DIM + 1], 10), "bad_request"),
            (search(vec![f32::NAN; DIM], 10), "bad_request"),
            (search(vec![0.1; DIM], 0), "bad_request"),
            (search(vec![0.1; DIM], 10), "unavailable"),
        ] {
            let reply = s.serve(&encode(&request).unwrap()).await;
            assert_eq!(code(&reply), want, "{request:?}");
        }
        let profile = WireProfile {
            emb: vec![0.1; DIM],
            feats: vec![0.0; FEAT_DIM],
            known: true,
        };
        let score = |ids: Vec<u64>| Request::Score {
            requests: vec![(profile.clone(), ids)],
            lane: 0,
            budget_us: 10_000,
        };
        let out_of_range = s.serve(&encode(&score(vec![3, 100])).unwrap()).await;
        assert_eq!(code(&out_of_range), "bad_request");
        let no_ranker = s.serve(&encode(&score(vec![3, 99])).unwrap()).await;
        assert_eq!(code(&no_ranker), "unavailable");
        let lookup = Request::Lookup {
            shard: 1,
            users: vec![("u1".into(), 1000)],
            fetch: true,
            budget_us: 10_000,
        };
        let owner = shard_of("u1", 2);
        let reply = s.serve(&encode(&lookup).unwrap()).await;
        let want = if owner == 1 {
            "unavailable"
        } else {
            "bad_request"
        };
        assert_eq!(code(&reply), want, "u1 belongs to shard {owner}");
    }
}
