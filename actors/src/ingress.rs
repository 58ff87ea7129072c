//! The `Ingress` actor: owns the HTTP listeners (axum) — the public port and, when
//! `admin.token` is set, the admin port — and turns requests into `PendingRequest`s for
//! the gateway.
//!
//! ```text
//! client ──HTTP──► access (trace, id, tenant) ──► routes ──► recommend: parse (validate, admit) ─ submit ──► Gateway
//!                                  ▲                                        │
//!                                  └── answer: oneshot reply (or 504) ◄─────┘
//!                     ├──► writes: /v1/events /v1/users/{id} ── Call::Write per shard ──► Router
//!                     ├──► items: /v1/items/{id} ── item store, overlay, Call::Items ──► Router
//!                     └──► ops: /healthz /readyz /metrics
//! operator ──HTTP──► access (bearer token) ──► admin routes: /cluster /admin/fault
//!                     GET /v1/users/{id}, models: /admin/models (reload) ── ModelLoader
//! ```
//!
//! - [`state`]: what the handlers share, and [`state::Refusal`], every refusal's JSON.
//! - [`access`]: the middleware of both ports and the access log; [`tenants`]: API keys.
//! - [`recommend`]: `/recommend`. [`writes`]: the write API of users and events,
//!   [`items`] of items. [`ops`]: the operator
//!   routes; `models`: the model admin routes. [`routes`]: the table. [`body`]: JSON bodies, bounded.
//!
//! Each listener runs as a task the actor starts in `pre_start` and shuts down
//! gracefully in `post_stop` (in-flight requests finish). Until the node marks itself
//! ready (`Serving` set), `/recommend` and `/readyz` answer 503.

mod access;
mod body;
mod items;
mod models;
pub mod ops;
mod recommend;
pub mod routes;
pub mod state;
pub mod tenants;
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
    /// The address the public listener is bound to (useful with port 0).
    LocalAddr(RpcReplyPort<SocketAddr>),
    /// The admin listener's address (`None`: no admin token, no admin port).
    AdminAddr(RpcReplyPort<Option<SocketAddr>>),
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for IngressMessage {}

/// Start arguments.
pub struct IngressArgs {
    /// Address of the public port.
    pub listen: SocketAddr,
    /// Address of the admin port (`None`: not started).
    pub admin_listen: Option<SocketAddr>,
    /// Shared handler state.
    pub state: Arc<IngressState>,
}

/// The ingress actor.
pub struct Ingress;

/// Ingress state: the server tasks and their shutdown switch.
pub struct IngressActorState {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
}

/// Serves `app` on `listener` until `shutdown` turns true (in-flight requests finish).
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "http server failed");
        }
    })
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
        let (shutdown, rx) = watch::channel(false);
        let mut servers = vec![serve(
            listener,
            routes::router(Arc::clone(&args.state)),
            rx.clone(),
        )];
        tracing::info!(%addr, "http listening");
        let admin_addr = match args.admin_listen {
            Some(listen) => {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                let admin = listener.local_addr()?;
                servers.push(serve(listener, routes::admin_router(args.state), rx));
                tracing::info!(addr = %admin, "admin listening");
                Some(admin)
            }
            None => {
                tracing::warn!("admin.token is not set: no admin listener (/cluster, /admin/*, user reads are off)");
                None
            }
        };
        Ok(IngressActorState {
            addr,
            admin_addr,
            shutdown,
            servers,
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut IngressActorState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.shutdown.send(true);
        let servers = futures_util::future::join_all(state.servers.drain(..));
        if tokio::time::timeout(Duration::from_secs(10), servers)
            .await
            .is_err()
        {
            tracing::warn!("http servers did not drain within 10 s");
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
            IngressMessage::AdminAddr(reply) => {
                let _ = reply.send(state.admin_addr);
            }
        }
        Ok(())
    }
}
