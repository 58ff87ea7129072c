//! `PeerStage`: the [`Stage`] of one peer's endpoint — the call in wire form
//! ([`Request::from_call`]), sent through ractor_cluster under the peer's in-flight cap,
//! the reply decoded and checked ([`Reply::into_answer`]). Outcomes are counted in
//! `recd_remote_calls_total{kind,outcome}`, latencies recorded for routing.

use super::wire::{EndpointMessage, Frame, Reply, Request};
use crate::data::Schema;
use crate::stage::{Answer, Call, Stage};
use futures_util::future::BoxFuture;
use ractor::rpc::CallResult;
use ractor::ActorRef;
use recd_runtime::clock::now;
use recd_runtime::compute::Priority;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::protocol::codec::{decode, encode_traced};
use recd_runtime::{ErrorCode, RecdError};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What every call to a peer shares.
pub struct PeerNet {
    /// Peer health, load and in-flight caps.
    pub peers: Arc<Peers>,
    /// Items in the catalogue (candidate ids in replies must be below) and its sizes,
    /// once loaded.
    pub catalogue: OnceLock<(usize, Schema)>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
}

/// One peer's endpoint, as a replica of a target.
pub struct PeerStage {
    /// The endpoint actor (a member of the target's process group).
    pub endpoint: ActorRef<EndpointMessage>,
    /// Its session node id.
    pub node: u64,
    /// Shared peer state.
    pub net: Arc<PeerNet>,
}

impl PeerStage {
    async fn run(
        &self,
        call: &Call,
        priority: Priority,
        timeout: Duration,
    ) -> Result<Answer, RecdError> {
        let kind = call.target().label();
        let net = &self.net;
        let count = |outcome: &str| {
            net.metrics
                .remote_calls
                .with_label_values(&[kind, outcome])
                .inc();
        };
        // a reply is checked against the catalogue: none is sent before it is loaded
        let Some(&(items, schema)) = net.catalogue.get() else {
            return Err(RecdError::unavailable("the catalogue is not loaded yet"));
        };
        let Some(_in_flight) = net.peers.try_acquire(self.node) else {
            count("saturated");
            return Err(RecdError::overloaded("peer at its in-flight cap"));
        };
        let bytes =
            encode_traced(&Request::from_call(call, priority), priority.trace).map_err(|e| {
                tracing::warn!(kind, error = %e, "remote call not encodable");
                RecdError::new(ErrorCode::Internal, e.to_string())
            })?;
        let started = now();
        let r = (self.endpoint)
            .call(
                |reply| EndpointMessage::Call(Frame(bytes), reply),
                Some(timeout),
            )
            .await;
        let reply = match r {
            Ok(CallResult::Success(Frame(b))) => match decode::<Reply>(&b) {
                Ok(reply) => reply,
                Err(e) => {
                    count("malformed");
                    tracing::warn!(kind, node = self.node, error = %e, "undecodable remote reply");
                    return Err(RecdError::new(ErrorCode::Internal, "undecodable reply"));
                }
            },
            Ok(CallResult::Timeout) => {
                count("timeout");
                return Err(RecdError::deadline("peer did not answer in time"));
            }
            // ractor often reports a timeout as a closed channel: both mean "next replica"
            _ => {
                count("closed");
                return Err(RecdError::unavailable("peer connection closed"));
            }
        };
        let error_reply = matches!(reply, Reply::Error { .. });
        let answer = match reply.into_answer(items, schema) {
            Ok(a) => a,
            Err(e) => {
                count(if error_reply { "error" } else { "malformed" });
                // our own pipeline built the call: a peer refusing it as bad means its
                // limits differ from ours (a rollout of config or catalogue)
                if e.code == ErrorCode::BadRequest {
                    tracing::warn!(kind, node = self.node, message = %e.message, "peer refused a call as bad: do its config and catalogue match?");
                } else {
                    tracing::debug!(kind, node = self.node, code = e.code.as_str(), message = %e.message, "remote call failed");
                }
                return Err(e);
            }
        };
        // the router checks the shape too (for every replica); here it decides what the
        // call is counted as and whether the peer's latency is believed
        if !call.fits(&answer) {
            count("malformed");
            return Err(RecdError::new(ErrorCode::Internal, "reply out of shape"));
        }
        let took = now().saturating_duration_since(started);
        net.peers.record(self.node, took);
        (net.metrics.remote_call_duration)
            .with_label_values(&[kind])
            .observe(took.as_secs_f64());
        count("ok");
        Ok(answer)
    }
}

impl Stage for PeerStage {
    fn call<'a>(
        &'a self,
        call: &'a Call,
        priority: Priority,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Answer, RecdError>> {
        Box::pin(self.run(call, priority, timeout))
    }
}
