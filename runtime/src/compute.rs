//! The compute pool: dedicated OS threads for CPU-heavy work (ANN search, model scoring)
//! so tokio workers and actor mailboxes stay responsive.
//!
//! A job carries its own state, typically the reply port of the actor call it answers,
//! and replies straight from the compute thread (no extra async hop). Waiting jobs are
//! served by lane first (0 first), then earliest deadline: the gateway already shares
//! dispatch fairly between lanes, and this queue only holds the jobs of the batches in
//! flight, so a higher lane's batch never waits behind a lower lane's here — under
//! overload the lower lanes' batches are the ones admitted closest to their deadlines,
//! and deadline order alone would put them first (docs/adr/0014). A job whose deadline passed before a thread
//! took it is dropped unrun (its caller has already fallen back) and counted. At most
//! `queue` jobs wait: `try_run` refuses beyond that and hands the state back so the
//! caller can answer `Overloaded` itself. A panicking job is caught; its state is dropped
//! (a reply port then reads as closed) and the thread lives on.

use prometheus::IntCounter;
use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Where a job stands in the queue: higher lane first (0 first), then earlier deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority {
    /// The deadline of the most urgent request the job serves.
    pub deadline: Instant,
    /// That request's lane.
    pub lane: usize,
    /// That request's trace id (W3C; 0: none), carried into remote calls.
    pub trace: u128,
}

struct Queued {
    priority: Priority,
    seq: u64,
    job: Job,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == CmpOrdering::Equal
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// The heap pops the greatest: make the highest lane, then the earliest deadline,
    /// the greatest.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (other.priority.lane, other.priority.deadline, other.seq).cmp(&(
            self.priority.lane,
            self.priority.deadline,
            self.seq,
        ))
    }
}

struct Shared {
    heap: Mutex<(BinaryHeap<Queued>, u64)>,
    ready: Condvar,
    expired: Option<IntCounter>,
}

/// Why a compute job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// The queue is full.
    #[error("compute queue full")]
    Full,
}

/// Handle to the pool; cheap to clone.
#[derive(Clone)]
pub struct ComputePool {
    shared: Arc<Shared>,
    capacity: usize,
    threads: usize,
}

impl ComputePool {
    /// Starts `threads` workers (0 = one per core) behind a queue of `queue` jobs;
    /// `expired` counts jobs dropped because their deadline passed while queued.
    pub fn new(threads: usize, queue: usize, expired: Option<IntCounter>) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let shared = Arc::new(Shared {
            heap: Mutex::new((BinaryHeap::new(), 0)),
            ready: Condvar::new(),
            expired,
        });
        for i in 0..threads {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("recd-compute-{i}"))
                .spawn(move || worker(&shared))
                .expect("spawning a compute thread");
        }
        Self {
            shared,
            capacity: queue.max(1),
            threads,
        }
    }

    /// Number of worker threads (callers that reserve per-thread state use it).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `f(state)` at `priority`; when the queue is full, returns the state with
    /// the error.
    pub fn try_run<T, F>(&self, priority: Priority, state: T, f: F) -> Result<(), (ComputeError, T)>
    where
        T: Send + 'static,
        F: FnOnce(T) + Send + 'static,
    {
        let mut guard = self.shared.heap.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0.len() >= self.capacity {
            return Err((ComputeError::Full, state));
        }
        guard.1 += 1;
        let seq = guard.1;
        let job: Job = Box::new(move || {
            let _ = catch_unwind(AssertUnwindSafe(|| f(state)));
        });
        guard.0.push(Queued { priority, seq, job });
        drop(guard);
        self.shared.ready.notify_one();
        Ok(())
    }
}

fn worker(shared: &Shared) {
    loop {
        let next = {
            let mut guard = shared.heap.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(q) = guard.0.pop() {
                    break q;
                }
                guard = shared.ready.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
        };
        if next.priority.deadline <= Instant::now() {
            // its caller has timed out and fallen back: dropping the job drops its reply
            if let Some(c) = &shared.expired {
                c.inc();
            }
            continue;
        }
        (next.job)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn soon() -> Priority {
        Priority {
            deadline: Instant::now() + std::time::Duration::from_secs(10),
            lane: 0,
            trace: 0,
        }
    }

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = ComputePool::new(2, 16, None);
        let (tx, rx) = oneshot::channel();
        pool.try_run(soon(), tx, |tx| {
            let _ = tx.send(2 + 2);
        })
        .map_err(|(e, _)| e)
        .unwrap();
        assert_eq!(rx.await, Ok(4));
        let (tx, rx) = oneshot::channel::<u32>();
        pool.try_run(soon(), tx, |_tx| panic!("boom"))
            .map_err(|(e, _)| e)
            .unwrap();
        assert!(rx.await.is_err(), "a panicking job drops its reply port");
        let (tx, rx) = oneshot::channel();
        pool.try_run(soon(), tx, |tx| {
            let _ = tx.send("still alive");
        })
        .map_err(|(e, _)| e)
        .unwrap();
        assert_eq!(rx.await, Ok("still alive"));
    }

    #[tokio::test]
    async fn full_queue_hands_the_state_back() {
        let pool = ComputePool::new(1, 2, None);
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        pool.try_run(soon(), block_rx, |rx| {
            let _ = rx.recv();
        })
        .map_err(|(e, _)| e)
        .unwrap();
        // the blocked job may already be running; at most 2 wait, so some try must fail
        let mut refused = None;
        for i in 0..4u32 {
            if let Err((e, state)) = pool.try_run(soon(), i, |_| ()) {
                refused = Some((e, state));
                break;
            }
        }
        let (e, state) = refused.expect("the queue bound was enforced");
        assert_eq!(e, ComputeError::Full);
        assert!(state < 4);
        block_tx.send(()).unwrap();
    }

    #[tokio::test]
    async fn higher_lanes_then_earliest_deadlines_run_first_and_expired_jobs_are_dropped() {
        let expired = IntCounter::new("expired", "test").unwrap();
        let pool = ComputePool::new(1, 16, Some(expired.clone()));
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        pool.try_run(soon(), (block_rx, started_tx), |(rx, started)| {
            let _ = started.send(());
            let _ = rx.recv();
        })
        .map_err(|(e, _)| e)
        .unwrap();
        started_rx.await.unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let now = Instant::now();
        let ms = std::time::Duration::from_millis;
        let mut done = Vec::new();
        for (name, deadline, lane) in [
            ("lane0-late", now + ms(900), 0),
            ("lane2-early", now + ms(300), 2),
            ("lane1", now + ms(600), 1),
            ("lane0-early", now + ms(600), 0),
            ("gone", now + ms(1), 0),
        ] {
            let (tx, rx) = oneshot::channel::<()>();
            let order = Arc::clone(&order);
            pool.try_run(
                Priority {
                    deadline,
                    lane,
                    trace: 0,
                },
                tx,
                move |tx| {
                    order.lock().unwrap().push(name);
                    let _ = tx.send(());
                },
            )
            .map_err(|(e, _)| e)
            .unwrap();
            done.push(rx);
        }
        std::thread::sleep(ms(5)); // "gone" expires while queued
        block_tx.send(()).unwrap();
        for rx in done {
            let _ = rx.await;
        }
        assert_eq!(
            *order.lock().unwrap(),
            vec!["lane0-early", "lane0-late", "lane1", "lane2-early"]
        );
        assert_eq!(expired.get(), 1);
    }
}
