//! When to close a micro-batch, and how long a batch takes: an online service-time
//! model and the batch-closing rule of DESIGN.md §8.1, as plain data (the gateway actor
//! owns one of each; tests drive them with explicit instants).
//!
//! - [`ServiceModel`]: EWMA of the pipeline time of a batch per size bucket (1, 2, 4, …),
//!   and of its deviation (the tail: mean + 2 × mean absolute deviation).
//! - [`BatchPolicy::Deadline`]: close when `earliest deadline − now − predicted(b) <
//!   margin` (or the batch is full); the age cap `max_wait` still applies.
//! - [`BatchPolicy::Fixed`]: close on size or when the oldest request has waited
//!   `max_wait`, as Triton, TF Serving or Ray Serve do; kept for comparison.

use std::time::{Duration, Instant};

const BUCKETS: usize = 12; // sizes up to 2048
const ALPHA: f64 = 0.2;

/// Online estimate of the pipeline time of a batch of `b` requests.
#[derive(Debug, Clone)]
pub struct ServiceModel {
    ewma_us: [Option<f64>; BUCKETS],
    dev_us: [f64; BUCKETS],
    prior: Duration,
}

fn bucket(b: usize) -> usize {
    (usize::BITS - b.max(1).leading_zeros() - 1).min(BUCKETS as u32 - 1) as usize
}

impl ServiceModel {
    /// A model that predicts `prior` until it has observations.
    pub fn new(prior: Duration) -> Self {
        Self {
            ewma_us: [None; BUCKETS],
            dev_us: [0.0; BUCKETS],
            prior,
        }
    }

    /// Records that a batch of `b` requests took `took` in the pipeline.
    pub fn observe(&mut self, b: usize, took: Duration) {
        let i = bucket(b);
        let us = took.as_secs_f64() * 1e6;
        self.ewma_us[i] = Some(match self.ewma_us[i] {
            None => us,
            Some(prev) => {
                self.dev_us[i] += ALPHA * ((us - prev).abs() - self.dev_us[i]);
                prev + ALPHA * (us - prev)
            }
        });
    }

    /// A pessimistic pipeline time of a batch of `b` (about its p95: mean + 2 × mean
    /// absolute deviation), for deciding whether a request can still make its deadline.
    /// A size not measured yet takes the relative spread of the nearest measured one.
    pub fn predict_tail(&self, b: usize) -> Duration {
        let mean = self.predict(b);
        match self.nearest(bucket(b)) {
            Some((j, m)) if m > 0.0 => mean.mul_f64(1.0 + 2.0 * self.dev_us[j] / m),
            _ => mean,
        }
    }

    /// The measured bucket nearest to `i` and its mean (µs).
    fn nearest(&self, i: usize) -> Option<(usize, f64)> {
        (0..BUCKETS)
            .filter_map(|j| self.ewma_us[j].map(|us| (j.abs_diff(i), j, us)))
            .min_by_key(|(d, _, _)| *d)
            .map(|(_, j, us)| (j, us))
    }

    /// Predicted pipeline time of a batch of `b`: the bucket's EWMA, else the nearest
    /// measured bucket scaled linearly by size, else the prior.
    pub fn predict(&self, b: usize) -> Duration {
        match self.nearest(bucket(b)) {
            Some((j, us)) if j == bucket(b) => Duration::from_secs_f64(us / 1e6),
            Some((j, us)) => {
                let scale = b.max(1) as f64 / (1usize << j) as f64;
                Duration::from_secs_f64(us * scale.max(1.0 / 64.0) / 1e6)
            }
            None => self.prior,
        }
    }
}

/// How the gateway closes batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchPolicy {
    /// Close on size or age only.
    Fixed {
        /// Age cap of the oldest request.
        max_wait: Duration,
    },
    /// Close when waiting longer would risk the earliest deadline.
    Deadline {
        /// Safety margin kept between predicted completion and the earliest deadline.
        margin: Duration,
        /// Age cap of the oldest request (a batch never waits longer than this).
        max_wait: Duration,
    },
}

/// What to do with the queued requests now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Close a batch now.
    Dispatch,
    /// Nothing to do before this instant (re-check then or on the next event).
    WaitUntil(Instant),
}

/// The queue's state as the batching rule sees it.
#[derive(Debug, Clone, Copy)]
pub struct QueueView {
    /// Requests queued.
    pub queued: usize,
    /// Enqueue time of the oldest.
    pub oldest: Instant,
    /// Earliest deadline among them.
    pub earliest_deadline: Instant,
}

impl BatchPolicy {
    /// Whether to close a batch of up to `max_batch` now.
    pub fn decide(
        &self,
        now: Instant,
        q: QueueView,
        max_batch: usize,
        model: &ServiceModel,
    ) -> Decision {
        if q.queued >= max_batch {
            return Decision::Dispatch;
        }
        match *self {
            BatchPolicy::Fixed { max_wait } => {
                let due = q.oldest + max_wait;
                if now >= due {
                    Decision::Dispatch
                } else {
                    Decision::WaitUntil(due)
                }
            }
            BatchPolicy::Deadline { margin, max_wait } => {
                // a batch that waits any longer would also grow by the next arrivals;
                // predict for the size it has now and the size it may reach
                let predicted = model.predict((q.queued + 1).min(max_batch));
                let latest_start = q
                    .earliest_deadline
                    .checked_sub(predicted + margin)
                    .unwrap_or(now);
                let due = latest_start.min(q.oldest + max_wait);
                if now >= due {
                    Decision::Dispatch
                } else {
                    Decision::WaitUntil(due)
                }
            }
        }
    }
}

/// How sure the early-refusal rule must be that a request makes its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// The batch's mean time fits: a slower batch answers it degraded, not refused.
    OnMean,
    /// The batch's tail fits (mean + 2 × deviation): admitted requests almost always get
    /// every rung of the ladder.
    OnTail,
}

/// Whether a request with `deadline` can still be answered in time if it joins a batch
/// of `b` starting at `now` (the early-refusal rule: refuse it, not the batch).
pub fn can_meet(
    now: Instant,
    deadline: Instant,
    b: usize,
    model: &ServiceModel,
    admit: Admit,
) -> bool {
    let time = match admit {
        Admit::OnMean => model.predict(b),
        Admit::OnTail => model.predict_tail(b),
    };
    now + time <= deadline
}

#[cfg(test)]
mod tests;
