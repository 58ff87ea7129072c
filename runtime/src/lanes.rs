//! Priority lanes: bounded per-lane queues served by weighted earliest-deadline-first,
//! shedding the lowest lane first. A plain data structure; the gateway actor owns one.
//!
//! Lane 0 is the highest priority. Each lane is kept in deadline order. A batch first
//! takes from each non-empty lane its reserved share, proportional to its weight (at
//! least one), earliest deadline first; the rest of the batch goes to the earliest
//! deadlines across all lanes. So a busy lane cannot starve another, and urgency decides
//! beyond the reservations. When the total bound is reached, a newcomer displaces the
//! latest-deadline request of the lowest non-empty lane strictly below its own;
//! otherwise it is refused.

use std::collections::VecDeque;
use std::time::Instant;

/// Index of a lane (0 = highest priority).
pub type LaneId = usize;

/// Which lanes are saturated, published by the gateway and read by the ingress so that a
/// request for a saturated lane is refused right after its headers, before its body is
/// read or anything is queued: under overload a refusal must cost far less than an
/// answer.
#[derive(Debug)]
pub struct LaneSaturation {
    flags: Vec<std::sync::atomic::AtomicBool>,
}

impl LaneSaturation {
    /// No lane saturated, for `lanes` lanes.
    pub fn new(lanes: usize) -> Self {
        Self {
            flags: (0..lanes)
                .map(|_| std::sync::atomic::AtomicBool::new(false))
                .collect(),
        }
    }

    /// Marks `lane` saturated or not.
    pub fn set(&self, lane: LaneId, saturated: bool) {
        if let Some(f) = self.flags.get(lane) {
            f.store(saturated, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether `lane` is saturated.
    pub fn is_saturated(&self, lane: LaneId) -> bool {
        self.flags
            .get(lane)
            .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }
}

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

/// An entry with the time it was queued and its deadline.
#[derive(Debug)]
pub struct Entry<T> {
    /// When the entry entered the queue.
    pub enqueued_at: Instant,
    /// When its budget runs out.
    pub deadline: Instant,
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

    /// Offers a request with `deadline` to `lane`.
    pub fn offer(&mut self, lane: LaneId, item: T, now: Instant, deadline: Instant) -> Offer<T> {
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
        let q = &mut self.queues[lane];
        let at = q.partition_point(|e| e.deadline <= deadline);
        q.insert(
            at,
            Entry {
                enqueued_at: now,
                deadline,
                item,
            },
        );
        self.total += 1;
        match evicted {
            Some(v) => Offer::QueuedEvicting(v),
            None => Offer::Queued,
        }
    }

    /// Enqueue time of the oldest request at the head of a lane. Lanes are in deadline
    /// order, which is arrival order for requests with the lane's default budget; a
    /// request with a longer custom budget may be older than this (O(lanes), not O(n)).
    pub fn oldest(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.front().map(|e| e.enqueued_at))
            .min()
    }

    /// The earliest deadline queued, over all lanes.
    pub fn earliest_deadline(&self) -> Option<Instant> {
        self.queues
            .iter()
            .filter_map(|q| q.front().map(|e| e.deadline))
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

    /// Takes up to `max` entries: each non-empty lane's reserved (weighted) share, then
    /// the earliest deadlines across lanes. Within a lane, earliest deadline first.
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
                let share = max as u64 * self.weights[lane] as u64 / active_weight as u64;
                self.take(lane, (share as usize).max(1), max, &mut out);
            }
        }
        while out.len() < max {
            let next = (0..self.queues.len())
                .filter_map(|l| self.queues[l].front().map(|e| (e.deadline, l)))
                .min();
            let Some((_, lane)) = next else { break };
            self.take(lane, 1, max, &mut out);
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
            q.offer(0, i, now, now);
            q.offer(2, 100 + i, now, now);
        }
        let batch = q.pop_batch(7);
        let lanes: Vec<_> = batch.iter().map(|(l, _)| *l).collect();
        assert_eq!(batch.len(), 7);
        // weights 4 and 1 over 7 slots: lane 0 reserves floor(28/5) = 5, lane 2 1; the
        // extra slot goes to the earliest deadline (a tie, broken by lane order)
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
        q.offer(2, 1, now, now);
        q.offer(2, 2, now, now);
        q.offer(1, 3, now, now);
        match q.offer(0, 4, now, now) {
            Offer::QueuedEvicting(v) => assert_eq!(v, 2),
            other => panic!("{other:?}"),
        }
        match q.offer(2, 5, now, now) {
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
        assert!(matches!(q.offer(0, 1, now, now), Offer::Queued));
        assert!(matches!(q.offer(0, 2, now, now), Offer::Refused(2)));
    }

    #[test]
    fn remove_where_keeps_order() {
        let mut q = queues();
        let now = Instant::now();
        for i in 0..6 {
            q.offer(1, i, now, now);
        }
        let gone = q.remove_where(|v| v % 2 == 0);
        assert_eq!(gone.len(), 3);
        let rest: Vec<_> = q.pop_batch(10).into_iter().map(|(_, e)| e.item).collect();
        assert_eq!(rest, vec![1, 3, 5]);
        assert!(q.is_empty());
    }

    #[test]
    fn edf_within_a_lane_and_across_lanes_beyond_reservations() {
        let mut q = LaneQueues::new(vec![1, 1], vec![10, 10], 100);
        let now = Instant::now();
        let at = |ms: u64| now + std::time::Duration::from_millis(ms);
        q.offer(0, "c-late", now, at(90));
        q.offer(0, "c-early", now, at(10));
        q.offer(0, "c-mid", now, at(50));
        q.offer(1, "b-urgent", now, at(5));
        q.offer(1, "b-relaxed", now, at(500));
        // 4 slots: floor(4 · 1/2) = 2 reserved per lane, EDF inside each lane
        let got: Vec<_> = q.pop_batch(4).into_iter().map(|(_, e)| e.item).collect();
        assert_eq!(got, vec!["c-early", "c-mid", "b-urgent", "b-relaxed"]);
        assert_eq!(
            q.pop_batch(4)
                .into_iter()
                .map(|(_, e)| e.item)
                .collect::<Vec<_>>(),
            vec!["c-late"]
        );
    }

    #[test]
    fn extra_slots_go_to_the_earliest_deadlines() {
        let mut q = LaneQueues::new(vec![1, 1], vec![10, 10], 100);
        let now = Instant::now();
        let at = |ms: u64| now + std::time::Duration::from_millis(ms);
        for i in 0..5 {
            q.offer(0, i, now, at(100 + i));
            q.offer(1, 10 + i, now, at(10 + i));
        }
        // floor(5 · 1/2) = 2 slots reserved per lane; the extra one goes to the earliest
        // deadline left, in lane 1
        let got: Vec<_> = q.pop_batch(5).into_iter().map(|(_, e)| e.item).collect();
        assert_eq!(got, vec![0, 1, 10, 11, 12]);
        assert_eq!(q.earliest_deadline(), Some(at(13)));
    }

    #[test]
    fn a_weighted_lane_is_never_starved() {
        let mut q = LaneQueues::new(vec![8, 4, 1], vec![1000, 1000, 1000], 3000);
        let now = Instant::now();
        let at = |ms: u64| now + std::time::Duration::from_millis(ms);
        q.offer(2, 9999, now, at(10_000));
        for i in 0..500 {
            q.offer(0, i, now, at(1));
            q.offer(1, 1000 + i, now, at(2));
        }
        let first: Vec<_> = q.pop_batch(16).into_iter().map(|(l, _)| l).collect();
        assert!(
            first.contains(&2),
            "background keeps its reserved slot under critical load"
        );
        assert_eq!(
            q.lane_len(0) + q.lane_len(1),
            1000 - first.iter().filter(|&&l| l < 2).count()
        );
    }
}
