//! The `Ingress` actor: owns the HTTP listener (axum) and turns requests into
//! `PendingRequest`s for the gateway.
//!
//! ```text
//! client ──HTTP──► routes ──► recommend: parse (validate, admit) ─ submit ──► Gateway
//!                                  ▲                                        │
//!                                  └── answer: oneshot reply (or 504) ◄─────┘
//!                     ├──► writes: /v1/events /v1/users/{id} ── Call::Write per shard ──► Router
//!                     ├──► items: /v1/items/{id} ── item store, overlay, Call::Items ──► Router
//!                     ├──► models: /admin/models (reload) ── the ranker's ModelLoader
//!                     └──► ops: /readyz /metrics /cluster /admin/fault
//! ```
//!
//! - [`state`]: what the handlers share, and [`state::Refusal`], every refusal's JSON.
//! - [`recommend`]: `/recommend`. [`writes`]: the write API of users and events,
//!   [`items`] of items. [`ops`]: the operator
//!   routes; `models`: the model admin routes. [`routes`]: the table. [`body`]: JSON bodies, bounded.
//!
//! The listener runs as a task the actor starts in `pre_start` and shuts down
//! gracefully in `post_stop` (in-flight requests finish). Until the node marks itself
//! ready (`Serving` set), `/recommend` and `/readyz` answer 503.

mod body;
mod items;
mod models;
pub mod ops;
mod recommend;
pub mod routes;
pub mod state;
mod writes;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use state::IngressState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Messages of the ingress.
pub enum IngressMessage {
    /// The address the listener is bound to (useful with port 0).
    LocalAddr(RpcReplyPort<SocketAddr>),
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for IngressMessage {}

/// Start arguments.
pub struct IngressArgs {
    /// Address to bind.
    pub listen: SocketAddr,
    /// Shared handler state.
    pub state: Arc<IngressState>,
}

/// The ingress actor.
pub struct Ingress;

/// Ingress state: the server task and its shutdown switch.
pub struct IngressActorState {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    server: Option<JoinHandle<()>>,
}

impl Actor for Ingress {
    type Msg = IngressMessage;
    type State = IngressActorState;
    type Arguments = IngressArgs;

    async fn pre_start(
        &self,
        _: ActorRef<Self::Msg>,
        args: IngressArgs,
    ) -> Result<IngressActorState, ActorProcessingErr> {
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let addr = listener.local_addr()?;
        let (shutdown, mut rx) = watch::channel(false);
        let app = routes::router(args.state);
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|v| *v).await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        });
        tracing::info!(%addr, "http listening");
        Ok(IngressActorState {
            addr,
            shutdown,
            server: Some(server),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut IngressActorState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.shutdown.send(true);
        if let Some(server) = state.server.take() {
            if tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .is_err()
            {
                tracing::warn!("http server did not drain within 10 s");
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        state: &mut IngressActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IngressMessage::LocalAddr(reply) => {
                let _ = reply.send(state.addr);
            }
        }
        Ok(())
    }
}
