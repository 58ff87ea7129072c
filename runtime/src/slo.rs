//! Per-lane SLOs and their burn rate, exported as `recd_slo_burn_rate{lane,window}`.
//!
//! A request is *bad* for its lane's SLO when recd answered it with a 5xx or 429, or
//! later than the lane's latency target. Burn rate = bad fraction ÷ error budget
//! (1 − availability target): 1.0 spends the budget exactly over the SLO period, 14.4
//! over a 1-hour window is the classic page. Windows are rings of 10-second buckets.

use std::sync::Mutex;
use std::time::{Duration, Instant};

const BUCKET: Duration = Duration::from_secs(10);
/// The windows exported, by label, in buckets.
pub const WINDOWS: [(&str, usize); 2] = [("1m", 6), ("5m", 30)];
const RING: usize = 30;

/// One lane's SLO target.
#[derive(Debug, Clone, Copy)]
pub struct SloTarget {
    /// Latency target.
    pub latency: Duration,
    /// Availability target, e.g. 0.999.
    pub availability: f64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    total: u64,
    bad: u64,
}

/// Good/bad counts per lane over the last 5 minutes.
pub struct SloTracker {
    targets: Vec<SloTarget>,
    rings: Mutex<Vec<[Bucket; RING]>>,
    start: Instant,
}

impl SloTracker {
    /// A tracker for lanes with these targets.
    pub fn new(targets: Vec<SloTarget>) -> Self {
        let rings = Mutex::new(vec![[Bucket::default(); RING]; targets.len()]);
        Self {
            targets,
            rings,
            start: crate::clock::now(),
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_secs() / BUCKET.as_secs()) + 1
    }

    /// Records one answer of `lane`: its HTTP status and latency.
    pub fn record(&self, lane: usize, status: u16, latency: Duration, now: Instant) {
        let Some(target) = self.targets.get(lane) else {
            return;
        };
        let bad = status >= 500 || status == 429 || latency > target.latency;
        let epoch = self.epoch(now);
        let mut rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut rings[lane][(epoch % RING as u64) as usize];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                total: 0,
                bad: 0,
            };
        }
        b.total += 1;
        b.bad += u64::from(bad);
    }

    /// Burn rate of `lane` over the last `buckets` buckets (0 with no traffic).
    pub fn burn_rate(&self, lane: usize, buckets: usize, now: Instant) -> f64 {
        let Some(target) = self.targets.get(lane) else {
            return 0.0;
        };
        let epoch = self.epoch(now);
        let rings = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let (mut total, mut bad) = (0, 0);
        for b in rings[lane]
            .iter()
            .filter(|b| b.epoch + (buckets as u64) > epoch && b.epoch <= epoch)
        {
            total += b.total;
            bad += b.bad;
        }
        if total == 0 {
            return 0.0;
        }
        let budget = (1.0 - target.availability).max(1e-9);
        (bad as f64 / total as f64) / budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_rate_counts_errors_and_slow_answers_in_the_window() {
        let ms = Duration::from_millis;
        let t = SloTracker::new(vec![SloTarget {
            latency: ms(100),
            availability: 0.99,
        }]);
        let now = t.start;
        for _ in 0..96 {
            t.record(0, 200, ms(5), now);
        }
        t.record(0, 503, ms(1), now);
        t.record(0, 429, ms(1), now);
        t.record(0, 200, ms(150), now); // too slow
        t.record(0, 400, ms(1), now); // the client's fault: good for the SLO
                                      // 3 bad of 100 with a 1 % budget: burning 3× the budget
        assert!((t.burn_rate(0, 6, now) - 3.0).abs() < 1e-9);
        // six minutes later the 1-minute and 5-minute windows are empty
        assert_eq!(t.burn_rate(0, 30, now + Duration::from_secs(360)), 0.0);
        assert_eq!(t.burn_rate(7, 6, now), 0.0, "unknown lane");
    }
}
