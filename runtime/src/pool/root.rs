//! The root of a node's supervision tree: every pool supervisor and the ingress are
//! spawned linked to it, so a child that dies — a pool supervisor is never expected to —
//! is seen here. The root does not guess at restarting a whole pool with its shards: it
//! marks the node unhealthy ([`Health`]), `/healthz` answers 500, and the orchestrator
//! restarts the process (docs/adr/0012).
//!
//! ```text
//! RootSupervisor ─┬─ PoolSupervisor("ingress") ─ Ingress × 1
//!                 ├─ PoolSupervisor("features") ─ FeatureShard × n   (restarts its workers,
//!                 ├─ PoolSupervisor(...)        ─ ...                 with backoff)
//!                 └─ PoolSupervisor("gateway")  ─ Gateway × 1
//!   child died (not while stopping) ──► Health: unhealthy, reason logged
//! ```

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Whether the node is alive, as its supervisors see it.
#[derive(Debug, Default)]
pub struct Health {
    failed: Mutex<Option<String>>,
    stopping: AtomicBool,
}

impl Health {
    /// A healthy node.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// `None` while healthy; else what died.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the node unhealthy (the first reason is kept).
    pub fn fail(&self, reason: String) {
        let mut f = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        f.get_or_insert(reason);
    }

    /// The node is shutting down: children stopping from now on are not failures.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }
}

/// Messages of the root.
#[derive(Debug)]
pub enum RootMessage {
    /// Name the linked child `id` for logs.
    Watch {
        /// The child.
        id: ActorId,
        /// What it is (`pool features`, `ingress`).
        name: String,
    },
}

// Local messages only
impl ractor::Message for RootMessage {}

/// The root supervisor actor.
pub struct RootSupervisor;

/// Its state.
pub struct RootState {
    health: Arc<Health>,
    names: HashMap<ActorId, String>,
}

impl Actor for RootSupervisor {
    type Msg = RootMessage;
    type State = RootState;
    type Arguments = Arc<Health>;

    async fn pre_start(
        &self,
        _: ActorRef<RootMessage>,
        health: Arc<Health>,
    ) -> Result<RootState, ActorProcessingErr> {
        Ok(RootState {
            health,
            names: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        _: ActorRef<RootMessage>,
        RootMessage::Watch { id, name }: RootMessage,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        state.names.insert(id, name);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<RootMessage>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()))
            }
            _ => return Ok(()),
        };
        let name =
            (state.names.remove(&cell.get_id())).unwrap_or_else(|| cell.get_id().to_string());
        if state.health.stopping.load(Ordering::SeqCst) {
            return Ok(());
        }
        tracing::error!(child = %name, reason = %why, "a child of the root supervisor died: node unhealthy");
        state.health.fail(format!("{name} died: {why}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::wait_until;

    struct Fragile;

    impl Actor for Fragile {
        type Msg = RootMessage;
        type State = ();
        type Arguments = ();
        async fn pre_start(
            &self,
            _: ActorRef<RootMessage>,
            _: (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
        async fn handle(
            &self,
            _: ActorRef<RootMessage>,
            _: RootMessage,
            _: &mut (),
        ) -> Result<(), ActorProcessingErr> {
            Err("boom".into())
        }
    }

    #[tokio::test]
    async fn a_dead_child_makes_the_node_unhealthy_unless_it_is_stopping() {
        let health = Health::new();
        let (root, _) = Actor::spawn(None, RootSupervisor, Arc::clone(&health))
            .await
            .unwrap();
        let (child, _) = Actor::spawn_linked(None, Fragile, (), root.get_cell())
            .await
            .unwrap();
        let id = child.get_id();
        root.cast(RootMessage::Watch {
            id,
            name: "pool test".into(),
        })
        .unwrap();
        assert_eq!(health.failure(), None);
        child
            .cast(RootMessage::Watch {
                id,
                name: String::new(),
            })
            .unwrap();
        wait_until(|| health.failure().is_some()).await;
        assert!(
            health.failure().unwrap().starts_with("pool test died"),
            "{:?}",
            health.failure()
        );

        let calm = Health::new();
        let (root, _) = Actor::spawn(None, RootSupervisor, Arc::clone(&calm))
            .await
            .unwrap();
        let (child, _) = Actor::spawn_linked(None, Fragile, (), root.get_cell())
            .await
            .unwrap();
        calm.stopping();
        child.stop_and_wait(None, None).await.unwrap();
        root.stop_and_wait(None, None).await.unwrap();
        assert_eq!(calm.failure(), None);
    }
}
