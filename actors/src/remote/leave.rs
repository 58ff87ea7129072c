//! A draining node's goodbye: [`announce`] tells the endpoint of every peer that this
//! node is leaving (`Request::Leaving`), and each peer's endpoint marks it down in its
//! `Peers` at once — its routers go to other replicas from the next call, not after the
//! heartbeat timeout. Calls already in flight to the leaving node are still answered
//! (its shards stop only after the drain).

use super::wire::{EndpointMessage, Frame, Reply, Request, ENDPOINT_GROUP};
use ractor::rpc::CallResult;
use ractor::ActorRef;
use recd_runtime::protocol::codec::{decode, encode};
use std::time::Duration;

/// Tells every peer's endpoint that node `me` is leaving; returns how many acknowledged
/// within `timeout` (all are asked at once).
pub async fn announce(me: &str, timeout: Duration) -> usize {
    let Ok(bytes) = encode(&Request::Leaving {
        node: me.to_owned(),
    }) else {
        return 0;
    };
    let calls = ractor::pg::get_members(&ENDPOINT_GROUP.to_owned())
        .into_iter()
        .filter(|cell| !cell.get_id().is_local())
        .map(|cell| {
            let endpoint: ActorRef<EndpointMessage> = cell.into();
            let bytes = bytes.clone();
            async move {
                let r = endpoint
                    .call(|reply| EndpointMessage::Call(Frame(bytes), reply), Some(timeout))
                    .await;
                matches!(r, Ok(CallResult::Success(Frame(b))) if matches!(decode::<Reply>(&b), Ok(Reply::Pong)))
            }
        });
    let acks = futures_util::future::join_all(calls).await;
    acks.into_iter().filter(|&ok| ok).count()
}
