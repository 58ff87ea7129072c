//! The compute pool: dedicated OS threads for CPU-heavy work (ANN search, model scoring)
//! so tokio workers and actor mailboxes stay responsive.
//!
//! Jobs enter a bounded queue (`try_submit` refuses when it is full: backpressure, never
//! an unbounded backlog) and answer through a oneshot. A panicking job is caught and
//! reported to its caller as an error; the thread lives on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Why a compute job did not produce a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComputeError {
    /// The queue is full.
    #[error("compute queue full")]
    Full,
    /// The job panicked.
    #[error("compute job panicked")]
    Panicked,
    /// The pool shut down before running the job.
    #[error("compute pool closed")]
    Closed,
}

/// Handle to the pool; cheap to clone.
#[derive(Clone)]
pub struct ComputePool {
    tx: SyncSender<Job>,
    threads: usize,
}

impl ComputePool {
    /// Starts `threads` workers (0 = one per core) behind a queue of `queue` jobs.
    pub fn new(threads: usize, queue: usize) -> Self {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            threads
        };
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("recd-compute-{i}"))
                .spawn(move || worker(rx))
                .expect("spawning a compute thread");
        }
        Self { tx, threads }
    }

    /// Number of worker threads (callers that reserve per-thread state use it).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `f`; the returned future yields its value.
    pub fn try_submit<R, F>(
        &self,
        f: F,
    ) -> Result<impl std::future::Future<Output = Result<R, ComputeError>>, ComputeError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let out = catch_unwind(AssertUnwindSafe(f)).map_err(|_| ComputeError::Panicked);
            let _ = tx.send(out);
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(async move { rx.await.unwrap_or(Err(ComputeError::Closed)) }),
            Err(TrySendError::Full(_)) => Err(ComputeError::Full),
            Err(TrySendError::Disconnected(_)) => Err(ComputeError::Closed),
        }
    }

    /// Runs `f` on the pool and waits for it.
    pub async fn run<R, F>(&self, f: F) -> Result<R, ComputeError>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        self.try_submit(f)?.await
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let guard = match rx.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            guard.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_jobs_and_survives_panics() {
        let pool = ComputePool::new(2, 16);
        assert_eq!(pool.run(|| 2 + 2).await, Ok(4));
        let r: Result<(), _> = pool.run(|| panic!("boom")).await;
        assert_eq!(r, Err(ComputeError::Panicked));
        assert_eq!(pool.run(|| "still alive").await, Ok("still alive"));
    }

    #[tokio::test]
    async fn full_queue_refuses() {
        let pool = ComputePool::new(1, 1);
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        let first = pool.try_submit(move || block_rx.recv().ok()).unwrap();
        // one job may be taken by the worker, one waits in the queue; the third must fail
        let mut refused = false;
        let mut pending = Vec::new();
        for _ in 0..3 {
            match pool.try_submit(|| ()) {
                Ok(f) => pending.push(f),
                Err(e) => {
                    assert_eq!(e, ComputeError::Full);
                    refused = true;
                }
            }
        }
        assert!(refused);
        block_tx.send(()).unwrap();
        assert_eq!(first.await, Ok(Some(())));
        for f in pending {
            assert_eq!(f.await, Ok(()));
        }
    }
}
