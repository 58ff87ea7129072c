//! What this node knows of each peer it calls: when it last answered a heartbeat, calls
//! in flight to it, and an EWMA of its call latency. Routing reads it to skip peers that
//! are down (hung or partitioned: no answered ping within the timeout) or saturated
//! (in-flight cap reached), and to prefer the least loaded replica.
//!
//! Peers are keyed by ractor_cluster's session node id, the id in every remote actor's
//! `ActorId::Remote`; the heartbeat (in recd-actors) calls [`Peers::heard`]. A peer that
//! announced it is draining ([`Peers::leaving`]) is down at once, whatever it answers,
//! until its session closes (a restarted node comes back on a new session).

use crate::clock::now;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// One peer's health and load.
pub struct Peer {
    last_seen: Mutex<Instant>,
    in_flight: AtomicUsize,
    ewma_us: AtomicU64,
    left: AtomicBool,
}

/// Health and load of every peer, by session node id.
pub struct Peers {
    peers: RwLock<HashMap<u64, Arc<Peer>>>,
    timeout: Duration,
    cap: usize,
}

/// A call in flight to a peer; dropping it ends the call.
pub struct InFlight(Arc<Peer>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn load(p: &Peer) -> (usize, u64) {
    (
        p.in_flight.load(Ordering::Relaxed),
        p.ewma_us.load(Ordering::Relaxed),
    )
}

/// A peer as `/cluster` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    /// Session node id.
    pub node: u64,
    /// Answered a ping within the timeout.
    pub up: bool,
    /// Calls in flight to it.
    pub in_flight: usize,
    /// EWMA of its call latency, ms.
    pub ewma_ms: f64,
    /// Since its last answered ping, ms.
    pub silent_ms: u64,
}

impl Peers {
    /// A peer is down after `timeout` without an answered ping; at most `cap` calls go
    /// to one peer at once.
    pub fn new(timeout: Duration, cap: usize) -> Arc<Self> {
        Arc::new(Self {
            peers: RwLock::new(HashMap::new()),
            timeout,
            cap,
        })
    }

    fn get(&self, node: u64) -> Arc<Peer> {
        if let Some(p) = self.read().get(&node) {
            return Arc::clone(p);
        }
        let mut w = self.peers.write().unwrap_or_else(|p| p.into_inner());
        // a peer first seen gets one timeout of grace before its first pong
        Arc::clone(w.entry(node).or_insert_with(|| {
            Arc::new(Peer {
                last_seen: Mutex::new(now()),
                in_flight: AtomicUsize::new(0),
                ewma_us: AtomicU64::new(0),
                left: AtomicBool::new(false),
            })
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<Peer>>> {
        self.peers.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The peer answered a ping.
    pub fn heard(&self, node: u64) {
        let p = self.get(node);
        *p.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = now();
    }

    /// The session to the peer closed: forget it (a reconnect starts fresh).
    pub fn forget(&self, node: u64) {
        self.peers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&node);
    }

    /// The peer announced it is draining: down from now on (until forgotten).
    pub fn leaving(&self, node: u64) {
        self.get(node).left.store(true, Ordering::Relaxed);
    }

    /// Starts tracking the peer (its silence counts from now) if it is not tracked yet.
    pub fn track(&self, node: u64) {
        self.get(node);
    }

    /// How long a tracked peer has not answered a ping; `None` for a peer not tracked.
    pub fn silent_for(&self, node: u64) -> Option<Duration> {
        let p = Arc::clone(self.read().get(&node)?);
        let seen = *p.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        Some(now().saturating_duration_since(seen))
    }

    /// Whether the peer answered a ping within the timeout.
    pub fn is_up(&self, node: u64) -> bool {
        self.load_if_up(node).is_some()
    }

    /// The peer's routing sort key ([`Peers::load`]) if it is up, in one lookup.
    pub fn load_if_up(&self, node: u64) -> Option<(usize, u64)> {
        let p = self.get(node);
        let seen = *p.last_seen.lock().unwrap_or_else(|p| p.into_inner());
        let up = now().saturating_duration_since(seen) <= self.timeout
            && !p.left.load(Ordering::Relaxed);
        up.then(|| load(&p))
    }

    /// Takes an in-flight slot on the peer; `None` when it is at the cap.
    pub fn try_acquire(&self, node: u64) -> Option<InFlight> {
        let p = self.get(node);
        let taken = p
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.cap).then_some(n + 1)
            });
        taken.ok().map(|_| InFlight(p))
    }

    /// Records a successful call's latency (EWMA, α = 1/8).
    pub fn record(&self, node: u64, latency: Duration) {
        let p = self.get(node);
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        let old = p.ewma_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { old - old / 8 + us / 8 };
        p.ewma_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Sort key of a peer for routing: fewer calls in flight first, then lower latency.
    pub fn load(&self, node: u64) -> (usize, u64) {
        load(&self.get(node))
    }

    /// Every known peer.
    pub fn snapshot(&self) -> Vec<PeerStatus> {
        let t = now();
        let mut all: Vec<PeerStatus> = self
            .read()
            .iter()
            .map(|(&node, p)| {
                let seen = *p.last_seen.lock().unwrap_or_else(|p| p.into_inner());
                let silent = t.saturating_duration_since(seen);
                PeerStatus {
                    node,
                    up: silent <= self.timeout && !p.left.load(Ordering::Relaxed),
                    in_flight: p.in_flight.load(Ordering::Relaxed),
                    ewma_ms: p.ewma_us.load(Ordering::Relaxed) as f64 / 1000.0,
                    silent_ms: silent.as_millis() as u64,
                }
            })
            .collect();
        all.sort_by_key(|p| p.node);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_goes_down_after_the_timeout_and_comes_back_when_heard() {
        let peers = Peers::new(Duration::from_millis(1500), 4);
        assert!(peers.is_up(7), "a new peer gets one timeout of grace");
        tokio::time::advance(Duration::from_millis(1400)).await;
        assert!(peers.is_up(7));
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(!peers.is_up(7));
        peers.heard(7);
        assert!(peers.is_up(7));
        assert!(peers.snapshot()[0].up);
        peers.leaving(7);
        peers.heard(7);
        assert!(
            !peers.is_up(7),
            "a leaving peer stays down while it still answers"
        );
        assert!(!peers.snapshot()[0].up);
        peers.forget(7);
        assert!(peers.is_up(7), "a new session starts fresh");
    }

    #[test]
    fn the_in_flight_cap_holds_and_frees_on_drop() {
        let peers = Peers::new(Duration::from_secs(1), 2);
        let a = peers.try_acquire(1).unwrap();
        let _b = peers.try_acquire(1).unwrap();
        assert!(peers.try_acquire(1).is_none());
        assert!(peers.try_acquire(2).is_some(), "caps are per peer");
        drop(a);
        assert_eq!(peers.load(1).0, 1);
        assert!(peers.try_acquire(1).is_some());
    }

    #[test]
    fn latency_is_smoothed() {
        let peers = Peers::new(Duration::from_secs(1), 2);
        peers.record(1, Duration::from_micros(800));
        assert_eq!(peers.load(1).1, 800);
        peers.record(1, Duration::from_micros(1600));
        assert_eq!(peers.load(1).1, 900);
    }
}
