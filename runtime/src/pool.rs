//! Supervised actor pools: a supervisor spawns `size` workers linked to itself, publishes
//! their refs in [`PoolSlots`] for routers, and restarts a failed worker with backoff.
//!
//! ```text
//! PoolSupervisor("index") ── spawn_linked ──► worker slot 0 .. slot n-1
//!        ▲  ActorFailed / ActorTerminated          │
//!        └─────────────────────────────────────────┘
//!   slot := None  →  wait backoff · 2^(consecutive failures)  →  respawn, slot := Some
//!   more than `max_restarts` in `window`: the slot stays empty (logged, gauge drops)
//!   and the node is marked unhealthy (`root::Health`: `/healthz` fails, the
//!   orchestrator restarts the process — no half-dead node, docs/adr/0012)
//! ```
//!
//! Every pool supervisor is linked to the node's [`root::RootSupervisor`].
//!
//! Routers read slots without touching the supervisor; a call to an empty slot or to a
//! worker that dies mid-call fails, and the caller falls back.

use crate::metrics::Metrics;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, Message, SupervisionEvent};
use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Current actor of every slot of a pool; `None` while a slot restarts.
pub struct PoolSlots<M> {
    slots: RwLock<Vec<Option<ActorRef<M>>>>,
}

impl<M: Message> PoolSlots<M> {
    /// Empty slots for a pool of `size`.
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: RwLock::new(vec![None; size]),
        })
    }

    /// The actor in `slot`, if live.
    pub fn get(&self, slot: usize) -> Option<ActorRef<M>> {
        self.read().get(slot).cloned().flatten()
    }

    /// The first live actor at or after `hint` (round-robin over live slots).
    pub fn pick(&self, hint: usize) -> Option<ActorRef<M>> {
        let slots = self.read();
        let n = slots.len();
        (0..n).find_map(|i| slots[(hint + i) % n].clone())
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True for a pool of size zero.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of live slots.
    pub fn live(&self) -> usize {
        self.read().iter().filter(|s| s.is_some()).count()
    }

    fn set(&self, slot: usize, actor: Option<ActorRef<M>>) {
        let mut slots = match self.slots.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        slots[slot] = actor;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Option<ActorRef<M>>>> {
        match self.slots.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }
}

/// How long a stopping supervisor waits for its workers' own `post_stop`.
const CHILDREN_STOP: Duration = Duration::from_secs(12);

/// Makes the worker actor (and its start arguments) for a slot.
pub trait WorkerFactory: Send + Sync + 'static {
    /// The worker actor type.
    type Worker: Actor;
    /// A fresh worker and its arguments for `slot`.
    fn make(&self, slot: usize) -> (Self::Worker, <Self::Worker as Actor>::Arguments);
}

/// Restart intensity and backoff.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Restarts allowed per slot in `window`.
    pub max_restarts: u32,
    /// Intensity window.
    pub window: Duration,
    /// First restart delay, doubled per consecutive failure (capped at 64×).
    pub backoff: Duration,
}

/// Start arguments of a pool supervisor.
pub struct PoolArgs<F: WorkerFactory> {
    /// Pool name (metrics label, logs).
    pub name: &'static str,
    /// Builds workers.
    pub factory: F,
    /// Where routers find the workers.
    pub slots: Arc<PoolSlots<<F::Worker as Actor>::Msg>>,
    /// Restart policy.
    pub policy: RestartPolicy,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// The node's health: a slot that exhausts its restart budget makes it unhealthy.
    pub health: Arc<root::Health>,
}

/// Messages of the pool supervisor.
#[derive(Debug)]
pub enum PoolMessage {
    /// Respawn the worker of `slot` (sent to itself after a backoff).
    Restart {
        /// Slot to refill.
        slot: usize,
    },
}

// Local messages only (ractor's cluster feature needs every message type to opt in;
// the remote ones carry a serialised form)
impl ractor::Message for PoolMessage {}

/// The supervisor actor of one pool.
pub struct PoolSupervisor<F>(PhantomData<fn() -> F>);

impl<F> Default for PoolSupervisor<F> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

/// State of a pool supervisor.
pub struct PoolState<F: WorkerFactory> {
    args: PoolArgs<F>,
    by_id: HashMap<ActorId, usize>,
    restarts: Vec<VecDeque<Instant>>,
    stopping: bool,
}

impl<F: WorkerFactory> PoolState<F> {
    async fn spawn_slot(&mut self, slot: usize, me: ActorCell) -> Result<(), ActorProcessingErr> {
        let (worker, args) = self.args.factory.make(slot);
        let (actor, _) = Actor::spawn_linked(None, worker, args, me).await?;
        self.by_id.insert(actor.get_id(), slot);
        self.args.slots.set(slot, Some(actor));
        self.report_live();
        Ok(())
    }

    fn report_live(&self) {
        let live = self.args.slots.live() as i64;
        self.args
            .metrics
            .pool_live
            .with_label_values(&[self.args.name])
            .set(live);
    }
}

impl<F: WorkerFactory> Actor for PoolSupervisor<F> {
    type Msg = PoolMessage;
    type State = PoolState<F>;
    type Arguments = PoolArgs<F>;

    async fn pre_start(
        &self,
        myself: ActorRef<PoolMessage>,
        args: PoolArgs<F>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let size = args.slots.len();
        let mut state = PoolState {
            args,
            by_id: HashMap::new(),
            restarts: vec![VecDeque::new(); size],
            stopping: false,
        };
        for slot in 0..size {
            state.spawn_slot(slot, myself.get_cell()).await?;
        }
        Ok(state)
    }

    async fn post_stop(
        &self,
        myself: ActorRef<PoolMessage>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.stopping = true;
        for slot in 0..state.args.slots.len() {
            state.args.slots.set(slot, None);
        }
        // waited for: a supervisor that returns first has ractor kill the children
        // still running, skipping their own post_stop (the ingress's HTTP drain)
        myself
            .stop_children_and_wait(None, Some(CHILDREN_STOP))
            .await;
        state.report_live();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<PoolMessage>,
        msg: PoolMessage,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let PoolMessage::Restart { slot } = msg;
        if state.stopping || state.args.slots.get(slot).is_some() {
            return Ok(());
        }
        if let Err(err) = state.spawn_slot(slot, myself.get_cell()).await {
            tracing::error!(pool = state.args.name, slot, error = %err, "worker restart failed");
            schedule_restart(&myself, state, slot);
        } else {
            state
                .args
                .metrics
                .actor_restarts
                .with_label_values(&[state.args.name])
                .inc();
            tracing::info!(pool = state.args.name, slot, "worker restarted");
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<PoolMessage>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let Some(slot) = state.by_id.remove(&cell.get_id()) else {
            return Ok(());
        };
        state.args.slots.set(slot, None);
        state.report_live();
        if state.stopping {
            return Ok(());
        }
        tracing::warn!(pool = state.args.name, slot, reason = %reason, "worker died");
        schedule_restart(&myself, state, slot);
        Ok(())
    }
}

fn schedule_restart<F: WorkerFactory>(
    myself: &ActorRef<PoolMessage>,
    state: &mut PoolState<F>,
    slot: usize,
) {
    let policy = state.args.policy;
    let now = Instant::now();
    let history = &mut state.restarts[slot];
    while history
        .front()
        .is_some_and(|t| now.duration_since(*t) > policy.window)
    {
        history.pop_front();
    }
    if history.len() as u32 >= policy.max_restarts {
        tracing::error!(
            pool = state.args.name,
            slot,
            max_restarts = policy.max_restarts,
            "restart intensity exceeded, slot left empty: node unhealthy"
        );
        state.args.health.fail(format!(
            "pool {} slot {slot} failed {} times in {:?}",
            state.args.name,
            policy.max_restarts + 1,
            policy.window
        ));
        return;
    }
    let delay = policy.backoff * 2u32.pow((history.len() as u32).min(6));
    history.push_back(now);
    myself.send_after(delay, move || PoolMessage::Restart { slot });
}

pub mod root;

#[cfg(test)]
mod tests;
