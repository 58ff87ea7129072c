//! The `Endpoint` actor: this node's door for other nodes. It joins the process group of
//! every shard this node holds (and `recd.ranker` when it runs rankers), so peers find
//! it with `pg::get_members`; each call is decoded, checked (`Request::into_call`), run on
//! this node's [`LocalStages`] in a task of its own and encoded back — bounded by
//! `cluster.max_served_in_flight` (more are answered `overloaded` at once). Bytes that do
//! not decode are counted (`recd_remote_served_total{outcome="malformed"}`) and answered
//! with an error.

use super::wire::{
    shard_group, EndpointMessage, Frame, Limits, Reply, Request, ENDPOINT_GROUP, RANKER_GROUP,
};
use crate::stage::local::LocalStages;
use crate::stage::Stage;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use recd_runtime::cluster::Membership;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::placement::ShardKind;
use recd_runtime::pool::WorkerFactory;
use recd_runtime::protocol::codec::{decode_traced, encode};
use recd_runtime::RecdError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::Instrument;

/// What the endpoint serves from, and its start arguments (a pool of one).
#[derive(Clone)]
pub struct Served {
    /// This node's stages (the same the local pipeline calls).
    pub local: Arc<LocalStages>,
    /// What requests are checked against.
    pub limits: Limits,
    /// Calls served at once.
    pub permits: Arc<Semaphore>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Members and peers, where a peer's `Leaving` is recorded.
    pub cluster: Option<(Arc<Membership>, Arc<Peers>)>,
}

impl Served {
    /// Remote calls being served now.
    pub fn in_flight(&self, max: usize) -> usize {
        max.saturating_sub(self.permits.available_permits())
    }
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
        let l = &served.local;
        groups.extend((l.index.held().iter()).map(|&s| shard_group(ShardKind::Index, s)));
        groups.extend((l.features.held().iter()).map(|&s| shard_group(ShardKind::Features, s)));
        if l.runs_rankers() {
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
            let busy = RecdError::overloaded("too many remote calls");
            let _ = reply.send(encoded(&Reply::from(busy)));
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

impl Served {
    fn count(&self, kind: &str, outcome: &str) {
        self.metrics
            .remote_served
            .with_label_values(&[kind, outcome])
            .inc();
    }

    /// Answers one encoded request: decode, check, call the local stage, answer. The
    /// call runs in a `remote` span with the caller's trace id.
    pub async fn serve(&self, bytes: &[u8]) -> Reply {
        let (request, trace) = match decode_traced::<Request>(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.count("any", "malformed");
                tracing::warn!(error = %e, "undecodable remote call");
                return Reply::from(RecdError::bad_request(e.to_string()));
            }
        };
        let kind = match &request {
            Request::Ping => "ping",
            Request::Leaving { node } => {
                if let Some((members, peers)) = &self.cluster {
                    for session in members.sessions_of(node) {
                        peers.leaving(session);
                    }
                }
                tracing::info!(peer = %node, "peer is draining: routed around from now on");
                self.count("leaving", "ok");
                return Reply::Pong;
            }
            Request::Lookup { .. } => "features",
            Request::Search { .. } => "index",
            Request::Score { .. } => "ranker",
            Request::Write { .. } => "writes",
            Request::Items { .. } => "items",
        };
        let span = match trace {
            0 => tracing::Span::none(),
            t => tracing::debug_span!("remote", kind, trace_id = %recd_runtime::trace::hex(t)),
        };
        let started = recd_runtime::clock::now();
        let reply = match request.into_call(self.limits, trace) {
            Ok(None) => Reply::Pong,
            Ok(Some((call, priority))) => {
                let timeout = until(priority.deadline);
                let served = self.local.call(&call, priority, timeout);
                match served.instrument(span.clone()).await {
                    Ok(answer) => Reply::from(answer),
                    Err(e) => Reply::from(e),
                }
            }
            Err(e) => Reply::from(e),
        };
        let outcome = match &reply {
            Reply::Error { code, .. } => code.as_str(),
            _ => "ok",
        };
        self.count(kind, outcome);
        span.in_scope(|| {
            let took_us = started.elapsed().as_micros() as u64;
            tracing::debug!(kind, outcome, took_us, "remote call served");
        });
        reply
    }
}

/// Time left until `deadline` (at least 1 ms: a call needs a timeout).
fn until(deadline: std::time::Instant) -> Duration {
    deadline
        .saturating_duration_since(recd_runtime::clock::now())
        .max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Schema;
    const DIM: usize = Schema::WORKLOAD.dim;
    const FEAT_DIM: usize = Schema::WORKLOAD.feat_dim;
    use crate::features::shard_of;
    use crate::remote::wire::WireProfile;
    use crate::stage::local::LocalShards;
    use recd_runtime::pool::PoolSlots;

    /// An endpoint of a node that holds no shard and runs no ranker.
    fn served(metrics: &Arc<Metrics>) -> Served {
        let local = LocalStages::new(
            LocalShards::new(Vec::new(), 2),
            LocalShards::new(Vec::new(), 2),
            PoolSlots::new(0),
        );
        Served {
            local: Arc::new(local),
            limits: Limits {
                feature_shards: 2,
                items: 100,
                max_recent: 16,
                schema: Schema::WORKLOAD,
            },
            permits: Arc::new(Semaphore::new(4)),
            metrics: Arc::clone(metrics),
            cluster: None,
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
            ef: k,
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
            recent: vec![],
        };
        let score = |ids: Vec<u64>| Request::Score {
            requests: vec![(profile.clone(), ids)],
            model: "ranker".into(),
            cascade: None,
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
