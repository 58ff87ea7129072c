//! Priority lanes: bounded per-lane queues with weighted batch dequeue and shedding of
//! the lowest lane first. A plain data structure; the gateway actor owns one.
//!
//! Lane 0 is the highest priority. A batch takes from each non-empty lane a share
//! proportional to its weight (at least one), then fills what is left in priority order,
//! so a busy high lane cannot starve a lower one and a lower lane cannot crowd out a
//! higher one. When the total bound is reached, a newcomer displaces the newest request
//! of the lowest non-empty lane strictly below its own; otherwise it is refused.

use std::collections::VecDeque;
use std::time::Instant;

/// Index of a lane (0 = highest priority).
pub type LaneId = usize;

/// Result of offering a request to the queues.
#[derive(Debug)]
pub enum Offer<T> {
    /// Queued.
    Queued,
    /// Queued, and this lower-lane request was evicted to make room.
    QueuedEvicting(T),
    /// Not queued: the lane or all queues are full.
    Refused(T),
}

/// An entry with the time it was queued.
#[derive(Debug)]
pub struct Entry<T> {
    /// When the entry entered the queue.
    pub enqueued_at: Instant,
    /// The queued request.
    pub item: T,
}

/// Bounded queues, one per lane.
#[derive(Debug)]
pub struct LaneQueues<T> {
    queues: Vec<VecDeque<Entry<T>>>,
    weights: Vec<u32>,
    capacities: Vec<usize>,
    max_total: usize,
    total: usize,
}

impl<T> LaneQueues<T> {
    /// Queues for lanes with these weights and per-lane capacities, bounded by `max_total`.
    pub fn new(weights: Vec<u32>, capacities: Vec<usize>, max_total: usize) -> Self {
        assert_eq!(weights.len(), capacities.len());
        Self {
            queues: weights.iter().map(|_| VecDeque::new()).collect(),
            weights,
            capacities,
            max_total,
            total: 0,
        }
    }

    /// Requests queued in all lanes.
    pub fn len(&self) -> usize {
        self.total
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Requests queued in one lane.
    pub fn lane_len(&self, lane: LaneId) -> usize {
        self.queues[lane].len()
    }

    /// Number of lanes.
    pub fn lanes(&self) -> usize {
        self.queues.len()
    }

    /// Offers a request to `lane`.
    pub fn offer(&mut self, lane: LaneId, item: T, now: Instant) -> Offer<T> {
        if self.queues[lane].len() >= self.capacities[lane] {
            return Offer::Refused(item);
        }
        let mut evicted = None;
        if self.total >= self.max_total {
            let victim_lane = (lane + 1..self.queues.len())
                .rev()
                .find(|&l| !self.queues[l].is_empty());
            match victim_lane {
                Some(l) => {
                    evicted = self.queues[l].pop_back().map(|e| e.item);
                    self.total -= 1;
                }
                None => return Offer::Refused(item),
            }
        }
        self.queues[lane].push_back(Entry {
            enqueued_at: now,
            item,
        });
        self.total += 1;
        match evicted {
            Some(v) => Offer::QueuedEvicting(v),
            None => Offer::Queued,
        }
    }

    /// Time the oldest queued request entered, over all lanes.
    pub fn oldest(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.front().map(|e| e.enqueued_at))
            .min()
    }

    /// Removes every entry for which `expired` is true (e.g. deadline passed, client
    /// gone) and returns them.
    pub fn remove_where(&mut self, mut expired: impl FnMut(&T) -> bool) -> Vec<Entry<T>> {
        let mut out = Vec::new();
        for q in &mut self.queues {
            let mut kept = VecDeque::with_capacity(q.len());
            for e in q.drain(..) {
                if expired(&e.item) {
                    out.push(e);
                } else {
                    kept.push_back(e);
                }
            }
            *q = kept;
        }
        self.total -= out.len();
        out
    }

    /// Takes up to `max` entries: a weighted share from each non-empty lane, then the
    /// rest in priority order. Within a lane, oldest first.
    pub fn pop_batch(&mut self, max: usize) -> Vec<(LaneId, Entry<T>)> {
        let mut out = Vec::with_capacity(max.min(self.total));
        let active_weight: u32 = (0..self.queues.len())
            .filter(|&l| !self.queues[l].is_empty())
            .map(|l| self.weights[l])
            .sum();
        if active_weight > 0 {
            for lane in 0..self.queues.len() {
                if self.queues[lane].is_empty() {
                    continue;
                }
                let share = (max as u64 * self.weights[lane] as u64).div_ceil(active_weight as u64);
                self.take(lane, (share as usize).max(1), max, &mut out);
            }
        }
        for lane in 0..self.queues.len() {
            self.take(lane, max, max, &mut out);
        }
        out
    }

    fn take(&mut self, lane: LaneId, n: usize, max: usize, out: &mut Vec<(LaneId, Entry<T>)>) {
        for _ in 0..n {
            if out.len() >= max {
                return;
            }
            match self.queues[lane].pop_front() {
                Some(e) => {
                    self.total -= 1;
                    out.push((lane, e));
                }
                None => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> LaneQueues<u32> {
        LaneQueues::new(vec![4, 2, 1], vec![10, 10, 10], 12)
    }

    #[test]
    fn weighted_batch_takes_from_every_lane() {
        let mut q = LaneQueues::new(vec![4, 2, 1], vec![10, 10, 10], 100);
        let now = Instant::now();
        for i in 0..10 {
            q.offer(0, i, now);
            q.offer(2, 100 + i, now);
        }
        let batch = q.pop_batch(7);
        let lanes: Vec<_> = batch.iter().map(|(l, _)| *l).collect();
        assert_eq!(batch.len(), 7);
        // weights 4 and 1 over 7 slots: lane 0 gets ceil(7*4/5)=6, lane 2 ceil(7/5)=2 but
        // only one slot is left.
        assert_eq!(lanes.iter().filter(|&&l| l == 0).count(), 6);
        assert_eq!(lanes.iter().filter(|&&l| l == 2).count(), 1);
        // oldest first within a lane
        assert_eq!(batch[0].1.item, 0);
        assert_eq!(q.len(), 13);
    }

    #[test]
    fn full_queues_shed_lowest_lane_newest_first() {
        let mut q = LaneQueues::new(vec![1, 1, 1], vec![10, 10, 10], 3);
        let now = Instant::now();
        q.offer(2, 1, now);
        q.offer(2, 2, now);
        q.offer(1, 3, now);
        match q.offer(0, 4, now) {
            Offer::QueuedEvicting(v) => assert_eq!(v, 2),
            other => panic!("{other:?}"),
        }
        match q.offer(2, 5, now) {
            Offer::Refused(v) => assert_eq!(v, 5),
            other => panic!("{other:?}"),
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.lane_len(2), 1);
    }

    #[test]
    fn lane_capacity_refuses() {
        let mut q = LaneQueues::new(vec![1], vec![1], 10);
        let now = Instant::now();
        assert!(matches!(q.offer(0, 1, now), Offer::Queued));
        assert!(matches!(q.offer(0, 2, now), Offer::Refused(2)));
    }

    #[test]
    fn remove_where_keeps_order() {
        let mut q = queues();
        let now = Instant::now();
        for i in 0..6 {
            q.offer(1, i, now);
        }
        let gone = q.remove_where(|v| v % 2 == 0);
        assert_eq!(gone.len(), 3);
        let rest: Vec<_> = q.pop_batch(10).into_iter().map(|(_, e)| e.item).collect();
        assert_eq!(rest, vec![1, 3, 5]);
        assert!(q.is_empty());
    }
}
