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
//! The node binds the listening sockets once ([`IngressArgs::bind`]); the actor is a
//! pool of one under its own `PoolSupervisor` ([`IngressFactory`]), like every stage.
//! Each incarnation serves clones of the same sockets, so a restart refuses no
//! connection (they wait in the backlog). Each listener runs as a task the actor starts
//! in `pre_start` and shuts down gracefully in `post_stop` (in-flight requests finish);
//! a task that ends on its own fails the actor, and one that dies with it is aborted.
//! Until the node marks itself ready (`Serving` set), `/recommend` and `/readyz` answer 503.

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

use ractor::{Actor, ActorProcessingErr, ActorRef};
use recd_runtime::pool::WorkerFactory;
use state::IngressState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Messages of the ingress.
pub enum IngressMessage {
    /// A server task ended while the actor was not stopping: the actor fails, and its
    /// supervisor restarts it.
    ServerExited(&'static str),
    /// Panics the actor (chaos drills: `/admin/fault {"pool":"ingress"}`).
    InjectPanic,
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for IngressMessage {}

/// Start arguments: the bound sockets (shared by every incarnation) and the handlers' state.
#[derive(Clone)]
pub struct IngressArgs {
    public: Arc<std::net::TcpListener>,
    admin: Option<Arc<std::net::TcpListener>>,
    /// Shared handler state.
    pub state: Arc<IngressState>,
}

impl IngressArgs {
    /// Binds the public port and, when `admin` is given, the admin port.
    pub async fn bind(
        public: SocketAddr,
        admin: Option<SocketAddr>,
        state: Arc<IngressState>,
    ) -> std::io::Result<Self> {
        let listen = |l: tokio::net::TcpListener| l.into_std().map(Arc::new);
        let public = listen(tokio::net::TcpListener::bind(public).await?)?;
        let admin = match admin {
            Some(a) => Some(listen(tokio::net::TcpListener::bind(a).await?)?),
            None => None,
        };
        Ok(Self {
            public,
            admin,
            state,
        })
    }

    /// The public port's address.
    pub fn addr(&self) -> std::io::Result<SocketAddr> {
        self.public.local_addr()
    }

    /// The admin port's address (`None`: no admin token, no admin port).
    pub fn admin_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.admin.as_ref().map(|l| l.local_addr()).transpose()
    }
}

/// Makes the pool's one ingress: every incarnation on the same sockets.
pub struct IngressFactory(pub IngressArgs);

impl WorkerFactory for IngressFactory {
    type Worker = Ingress;
    fn make(&self, _slot: usize) -> (Ingress, IngressArgs) {
        (Ingress, self.0.clone())
    }
}

/// The ingress actor.
pub struct Ingress;

/// The server tasks of one incarnation; dropped with it (a panic), they are aborted.
struct Servers(Vec<JoinHandle<()>>);

impl Drop for Servers {
    fn drop(&mut self) {
        self.0.iter().for_each(JoinHandle::abort);
    }
}

/// Ingress state: the server tasks and their shutdown switch.
pub struct IngressActorState {
    shutdown: watch::Sender<bool>,
    servers: Servers,
}

/// Tells the actor its server task ended — returned, panicked or aborted — unless the
/// actor is stopping (after a panic of the actor itself the message has nowhere to go).
struct Exited {
    name: &'static str,
    stopping: watch::Receiver<bool>,
    me: ActorRef<IngressMessage>,
}

impl Drop for Exited {
    fn drop(&mut self) {
        if !*self.stopping.borrow() {
            let _ = self.me.cast(IngressMessage::ServerExited(self.name));
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true (in-flight requests finish);
/// ending before that, however, is reported to the actor.
fn serve(
    name: &'static str,
    listener: &std::net::TcpListener,
    app: axum::Router,
    mut shutdown: watch::Receiver<bool>,
    me: ActorRef<IngressMessage>,
) -> std::io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
    tracing::info!(addr = %listener.local_addr()?, "{name} listening");
    let exited = Exited {
        name,
        stopping: shutdown.clone(),
        me,
    };
    Ok(tokio::spawn(async move {
        let _exited = exited;
        let stop = async move {
            let _ = shutdown.wait_for(|v| *v).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "{name} server failed");
        }
    }))
}

impl Actor for Ingress {
    type Msg = IngressMessage;
    type State = IngressActorState;
    type Arguments = IngressArgs;

    async fn pre_start(
        &self,
        me: ActorRef<Self::Msg>,
        args: IngressArgs,
    ) -> Result<IngressActorState, ActorProcessingErr> {
        let (shutdown, rx) = watch::channel(false);
        let public = routes::router(Arc::clone(&args.state));
        let mut servers = vec![serve("http", &args.public, public, rx.clone(), me.clone())?];
        match &args.admin {
            Some(l) => {
                let admin = routes::admin_router(args.state);
                servers.push(serve("admin", l, admin, rx, me)?);
            }
            None => {
                tracing::warn!("admin.token is not set: no admin listener (/cluster, /admin/*, user reads are off)");
            }
        }
        Ok(IngressActorState {
            shutdown,
            servers: Servers(servers),
        })
    }

    async fn post_stop(
        &self,
        _: ActorRef<Self::Msg>,
        state: &mut IngressActorState,
    ) -> Result<(), ActorProcessingErr> {
        let _ = state.shutdown.send(true);
        let servers = futures_util::future::join_all(state.servers.0.iter_mut());
        if tokio::time::timeout(Duration::from_secs(10), servers)
            .await
            .is_err()
        {
            // dropping the state aborts them
            tracing::warn!("http servers did not drain within 10 s");
        }
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _: &mut IngressActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IngressMessage::ServerExited(name) => Err(format!("the {name} server ended").into()),
            IngressMessage::InjectPanic => panic!("injected fault (ingress)"),
        }
    }
}
