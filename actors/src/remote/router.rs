//! The `Router`: where each stage call of a micro-batch goes, over the [`Stage`] seam.
//! Writes are the exception to hedging and failover (see `Call::is_write`).
//! It only chooses: replicas in order — this node's own first, then the least in flight,
//! then the lowest EWMA latency; a failed attempt (transient error, wrong-shaped answer)
//! moves on to the next replica at once; an attempt still out after the hedge delay
//! (`cluster.hedge_delay_ms`, or the kind's observed p95) gets the next replica asked in
//! parallel, and the first good answer wins; a refusal of the call itself (bad request)
//! ends it at once, since every replica would refuse it too. All attempts of one call
//! share its deadline. Nothing answered: the stage degrades (default profile, partial
//! coverage, ANN order).
//!
//! Where the replicas of a target are comes from a [`Replicas`] (the node's:
//! `remote::replicas::NodeReplicas`; tests use fakes).

use crate::stage::{is_transient, retry_write_on, Answer, Call, Stage, Target};
use crate::types::{Candidate, Cascade, ModelRef, Profile, ScoreRequest};
use futures_util::stream::{FuturesUnordered, StreamExt};
use recd_runtime::compute::Priority;
use recd_runtime::metrics::Metrics;
use recd_runtime::RecdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Hedge delay before any latency was observed.
const INITIAL_HEDGE: Duration = Duration::from_millis(5);

/// One replica of a target, with what the router orders by.
pub struct Replica {
    /// How to call it.
    pub stage: Arc<dyn Stage>,
    /// This node's own actors.
    pub local: bool,
    /// Calls in flight to it.
    pub in_flight: usize,
    /// EWMA of its call latency, µs.
    pub ewma_us: u64,
}

/// The live replicas of a target (any order: the router sorts them).
pub trait Replicas: Send + Sync {
    /// Replicas serving `target` now.
    fn replicas(&self, target: Target) -> Vec<Replica>;
}

/// Shards per kind in the cluster.
#[derive(Debug, Clone, Copy)]
pub struct ShardCounts {
    /// Feature shards.
    pub features: usize,
    /// Index shards.
    pub index: usize,
}

/// EWMA of a kind's latency and of its absolute deviation: p95 ≈ mean + 2·deviation.
#[derive(Default)]
struct Latency {
    mean_us: f64,
    dev_us: f64,
}

impl Latency {
    fn observe(&mut self, d: Duration) {
        let x = d.as_secs_f64() * 1e6;
        if self.mean_us == 0.0 {
            self.mean_us = x;
            return;
        }
        let err = x - self.mean_us;
        self.mean_us += err / 16.0;
        self.dev_us += (err.abs() - self.dev_us) / 16.0;
    }

    fn p95(&self) -> Option<Duration> {
        (self.mean_us > 0.0)
            .then(|| Duration::from_secs_f64((self.mean_us + 2.0 * self.dev_us) / 1e6))
    }
}

/// Where this node's pipeline sends its stage calls.
pub struct Router {
    replicas: Arc<dyn Replicas>,
    shards: ShardCounts,
    hedge_delay: Option<Duration>,
    latency: [Mutex<Latency>; Target::KINDS],
    metrics: Arc<Metrics>,
}

type Attempt<'a> = Pin<Box<dyn Future<Output = (Result<Answer, RecdError>, Duration)> + Send + 'a>>;

impl Router {
    /// A router over `replicas`; `hedge_delay` fixed, or `None` for the kind's p95.
    pub fn new(
        replicas: Arc<dyn Replicas>,
        shards: ShardCounts,
        hedge_delay: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            replicas,
            shards,
            hedge_delay,
            latency: Default::default(),
            metrics,
        }
    }

    /// Shards per kind.
    pub fn shards(&self) -> ShardCounts {
        self.shards
    }

    /// Profiles of `users` from feature shard `shard`; `None` when no replica answered.
    pub async fn lookup(
        &self,
        shard: usize,
        users: Vec<(Arc<str>, Duration)>,
        fetch: bool,
        priority: Priority,
        timeout: Duration,
    ) -> Option<Vec<Option<Arc<Profile>>>> {
        let call = Call::Lookup {
            shard,
            users,
            fetch,
        };
        match self.call(call, priority, timeout).await {
            Ok(Answer::Profiles(p)) => Some(p),
            _ => None,
        }
    }

    /// The `k` nearest items of each query in index shard `shard`, searched `ef` wide,
    /// or why no replica answered.
    pub async fn search(
        &self,
        shard: usize,
        (queries, dim): (Arc<Vec<f32>>, usize),
        (k, ef): (usize, usize),
        priority: Priority,
        timeout: Duration,
    ) -> Result<Vec<Vec<Candidate>>, RecdError> {
        let call = Call::Search {
            shard,
            queries,
            dim,
            k,
            ef,
        };
        match self.call(call, priority, timeout).await? {
            Answer::Candidates(c) => Ok(c),
            _ => Err(RecdError::new(
                recd_runtime::ErrorCode::Internal,
                "search answered out of kind",
            )),
        }
    }

    /// Scores of each request's candidates by `model`, with the `name@version` that
    /// scored; `None` when no ranker answered.
    pub async fn score(
        &self,
        requests: Arc<Vec<ScoreRequest>>,
        (model, cascade): (&ModelRef, Option<&Cascade>),
        priority: Priority,
        timeout: Duration,
    ) -> Option<(Vec<Vec<f32>>, Arc<str>)> {
        let call = Call::Score {
            requests,
            model: model.clone(),
            cascade: cascade.cloned(),
        };
        match self.call(call, priority, timeout).await {
            Ok(Answer::Scores { scores, model }) => Some((scores, model)),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(error = %e.message, %model, "no ranker answered");
                None
            }
        }
    }

    /// Runs `call` on the replicas of its target in order until one answers, all within
    /// `timeout` from now: a failed attempt moves on at once, a slow one is hedged, a bad
    /// request ends the call.
    pub async fn call(
        &self,
        call: Call,
        priority: Priority,
        timeout: Duration,
    ) -> Result<Answer, RecdError> {
        let target = call.target();
        let give_up = Instant::now() + timeout;
        let mut queue = self.replicas.replicas(target);
        queue.sort_by_key(|r| (!r.local, r.in_flight, r.ewma_us));
        let mut queue = queue.into_iter();
        let call = &call;
        let launch = |pending: &mut FuturesUnordered<_>,
                      queue: &mut std::vec::IntoIter<Replica>| {
            launch(pending, queue, call, priority, give_up)
        };
        let mut pending = FuturesUnordered::new();
        let mut last = RecdError::unavailable(format!("no live replica of {target:?}"));
        if !launch(&mut pending, &mut queue) {
            return Err(last);
        }
        loop {
            let hedge = self.hedge_delay(target, timeout);
            let can_hedge = queue.len() > 0 && !call.is_write();
            tokio::select! {
                done = pending.next() => match done {
                    Some((Ok(answer), took)) if call.fits(&answer) => {
                        if let Ok(mut l) = self.latency[target.kind()].lock() {
                            l.observe(took);
                        }
                        return Ok(answer);
                    }
                    Some((r, _)) => {
                        last = match r {
                            Err(e) if !is_transient(&e) => return Err(e),
                            Err(e) if call.is_write() && !retry_write_on(&e) => return Err(e),
                            Ok(_) if call.is_write() => return Err(RecdError::unavailable(format!("a replica of {target:?} answered a write out of shape"))),
                            // the call's time is up: a closed channel then was a timeout too
                            _ if Instant::now() >= give_up => RecdError::deadline(format!("no replica of {target:?} answered in time")),
                            Err(e) => e,
                            Ok(_) => RecdError::unavailable(format!("a replica of {target:?} answered out of shape")),
                        };
                        if !launch(&mut pending, &mut queue) && pending.is_empty() {
                            return Err(last);
                        }
                    }
                    None => return Err(last),
                },
                _ = tokio::time::sleep(hedge), if can_hedge => {
                    if launch(&mut pending, &mut queue) {
                        self.metrics.remote_hedges.with_label_values(&[target.label()]).inc();
                    }
                }
                _ = tokio::time::sleep_until(give_up) => {
                    return Err(RecdError::deadline(format!("no replica of {target:?} answered in time")));
                }
            }
        }
    }

    fn hedge_delay(&self, target: Target, timeout: Duration) -> Duration {
        self.hedge_delay
            .or_else(|| self.latency[target.kind()].lock().ok()?.p95())
            .unwrap_or(INITIAL_HEDGE)
            .clamp(
                Duration::from_millis(1),
                timeout.max(Duration::from_millis(1)),
            )
    }
}

/// Starts an attempt on the next replica of `queue`, with what is left of the call's
/// time; false when none is left.
fn launch<'a>(
    pending: &mut FuturesUnordered<Attempt<'a>>,
    queue: &mut std::vec::IntoIter<Replica>,
    call: &'a Call,
    priority: Priority,
    give_up: Instant,
) -> bool {
    let Some(replica) = queue.next() else {
        return false;
    };
    let left = give_up.saturating_duration_since(Instant::now());
    pending.push(Box::pin(async move {
        let started = Instant::now();
        let r = replica.stage.call(call, priority, left).await;
        (r, started.elapsed())
    }));
    true
}

#[cfg(test)]
mod tests;
