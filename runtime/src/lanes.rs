//! Priority lanes: bounded per-lane queues taking turns by weighted fair share, earliest
//! deadline first inside a lane, shedding the lowest lane first. A plain data structure;
//! the gateway actor owns one.
//!
//! Lane 0 is the highest priority. Each lane is kept in deadline order. A batch comes
//! from one lane — its requests share a budget and a service time (docs/adr/0014) — and
//! takes that lane's earliest deadlines. Lanes take turns by weighted fair share of the
//! requests served (start-time fair queueing: a lane's virtual time advances by
//! `requests / weight`, the non-empty lane with the least goes next, and a lane that was
//! idle starts even with the busy lanes — or, when none is, at the start of the turn
//! last served — so it banks no credit, also when every lane was empty). So a busy lane cannot starve
//! another, and a lane of weight 8 gets eight times the requests of a lane of weight 1
//! while both are busy (a thin lane, like critical, is in effect served at once). When
//! the total bound is reached, a newcomer displaces the latest-deadline request of the
//! lowest non-empty lane strictly below its own; otherwise it is refused.

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
    /// Per lane: requests served / weight (start-time fair queueing).
    vtime: Vec<f64>,
    /// The system's virtual time: where the last turn served started.
    vsys: f64,
}

impl<T> LaneQueues<T> {
    /// Queues for lanes with these weights and per-lane capacities, bounded by `max_total`.
    pub fn new(weights: Vec<u32>, capacities: Vec<usize>, max_total: usize) -> Self {
        assert_eq!(weights.len(), capacities.len());
        Self {
            queues: weights.iter().map(|_| VecDeque::new()).collect(),
            vtime: vec![0.0; weights.len()],
            vsys: 0.0,
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
        if self.queues[lane].is_empty() {
            // back from idle: start even with the busy lanes (or, when none is busy, at
            // the start of the turn last served), not with banked credit
            let busy = (0..self.queues.len())
                .filter(|&l| !self.queues[l].is_empty())
                .map(|l| self.vtime[l])
                .fold(f64::INFINITY, f64::min);
            let now = if busy.is_finite() { busy } else { self.vsys };
            self.vtime[lane] = self.vtime[lane].max(now);
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

    /// The non-empty lanes, the one due by fair share first (ties: the higher lane).
    pub fn lanes_by_share(&self) -> Vec<LaneId> {
        let mut lanes: Vec<LaneId> = (0..self.queues.len())
            .filter(|&l| !self.queues[l].is_empty())
            .collect();
        lanes.sort_by(|&a, &b| self.vtime[a].total_cmp(&self.vtime[b]).then(a.cmp(&b)));
        lanes
    }

    /// The head of `lane`: when it was queued and its deadline (the lane's earliest).
    pub fn head(&self, lane: LaneId) -> Option<(Instant, Instant)> {
        self.queues[lane]
            .front()
            .map(|e| (e.enqueued_at, e.deadline))
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

    /// Takes up to `max` entries of `lane`, earliest deadline first. The caller charges
    /// the lane for what it serves ([`LaneQueues::charge`]): entries it refuses instead
    /// must not cost their lane turns.
    pub fn pop_lane(&mut self, lane: LaneId, max: usize) -> Vec<Entry<T>> {
        let n = max.min(self.queues[lane].len());
        self.total -= n;
        self.queues[lane].drain(..n).collect()
    }

    /// Charges `lane` for a turn that served `n` requests.
    pub fn charge(&mut self, lane: LaneId, n: usize) {
        self.vsys = self.vtime[lane];
        self.vtime[lane] += n as f64 / f64::from(self.weights[lane].max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues() -> LaneQueues<u32> {
        LaneQueues::new(vec![4, 2, 1], vec![10, 10, 10], 12)
    }

    #[test]
    fn lanes_take_turns_by_weighted_share() {
        let mut q = LaneQueues::new(vec![4, 2, 1], vec![100, 100, 100], 300);
        let now = Instant::now();
        for i in 0..60 {
            q.offer(0, i, now, now);
            q.offer(2, 100 + i, now, now);
        }
        let mut served = [0usize; 3];
        for _ in 0..10 {
            let lane = q.lanes_by_share()[0];
            let n = q.pop_lane(lane, 5).len();
            q.charge(lane, n);
            served[lane] += n;
        }
        // weights 4 and 1: lane 0 gets four fifths of the requests while both are busy
        assert_eq!(served, [40, 0, 10]);
        assert_eq!(q.len(), 70);
    }

    #[test]
    fn a_lane_back_from_idle_banks_no_credit() {
        let mut q = LaneQueues::new(vec![1, 1], vec![100, 100], 200);
        let now = Instant::now();
        for i in 0..40 {
            q.offer(1, i, now, now);
        }
        for _ in 0..4 {
            q.pop_lane(1, 5);
            q.charge(1, 5);
        }
        // lane 0 was idle while lane 1 was served 20: it starts even, not 20 ahead
        for i in 0..40 {
            q.offer(0, 100 + i, now, now);
        }
        let mut order = Vec::new();
        for _ in 0..4 {
            let lane = q.lanes_by_share()[0];
            q.pop_lane(lane, 5);
            q.charge(lane, 5);
            order.push(lane);
        }
        assert_eq!(
            order,
            vec![0, 1, 0, 1],
            "turns alternate from the same start"
        );
    }

    #[test]
    fn no_credit_is_banked_while_every_lane_is_empty() {
        let mut q = LaneQueues::new(vec![8, 1], vec![100, 100], 200);
        let now = Instant::now();
        // light load: the heavy lane is served alone, queues empty after every turn
        for i in 0..100 {
            q.offer(0, i, now, now);
            q.pop_lane(0, 1);
            q.charge(0, 1);
        }
        // then both lanes are busy: the light lane must not own the next turns
        for i in 0..50 {
            q.offer(0, 1000 + i, now, now);
            q.offer(1, 2000 + i, now, now);
        }
        let turns: Vec<LaneId> = (0..9)
            .map(|_| {
                let lane = q.lanes_by_share()[0];
                q.pop_lane(lane, 1);
                q.charge(lane, 1);
                lane
            })
            .collect();
        assert_eq!(turns.iter().filter(|&&l| l == 1).count(), 1, "{turns:?}");
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
        let rest: Vec<_> = q.pop_lane(1, 10).into_iter().map(|e| e.item).collect();
        assert_eq!(rest, vec![1, 3, 5]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_lane_is_served_earliest_deadline_first() {
        let mut q = LaneQueues::new(vec![1, 1], vec![10, 10], 100);
        let now = Instant::now();
        let at = |ms: u64| now + std::time::Duration::from_millis(ms);
        q.offer(0, "late", now, at(90));
        q.offer(0, "early", now, at(10));
        q.offer(0, "mid", now, at(50));
        q.offer(1, "other lane", now, at(5));
        assert_eq!(q.head(0), Some((now, at(10))));
        let got: Vec<_> = q.pop_lane(0, 2).into_iter().map(|e| e.item).collect();
        assert_eq!(got, vec!["early", "mid"]);
        assert_eq!(q.lane_len(0), 1);
        assert_eq!(q.lane_len(1), 1);
    }

    #[test]
    fn a_weighted_lane_is_never_starved() {
        let mut q = LaneQueues::new(vec![8, 4, 1], vec![1000, 1000, 1000], 3000);
        let now = Instant::now();
        q.offer(2, 9999, now, now);
        for i in 0..500 {
            q.offer(0, i, now, now);
            q.offer(1, 1000 + i, now, now);
        }
        let turns: Vec<LaneId> = (0..16)
            .map(|_| {
                let lane = q.lanes_by_share()[0];
                q.pop_lane(lane, 8);
                q.charge(lane, 8);
                lane
            })
            .collect();
        assert!(
            turns.contains(&2),
            "background gets its turn under critical load: {turns:?}"
        );
    }
}
