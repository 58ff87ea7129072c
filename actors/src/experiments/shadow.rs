//! Shadow traffic that measures itself: how a shadow variant's answer compares with the
//! primary one it shadowed — overlap@k, rank-biased overlap (RBO, a rank correlation for
//! top-k lists that need not hold the same items) and the latency of both — exported as
//! `recd_shadow_*` and summarised as JSON (`GET /admin/experiments`) so a variant can be
//! promoted on evidence. The runs themselves are the pipeline's (`pipeline::shadow`).

use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts};
use recd_runtime::metrics::Metrics;
use serde::Serialize;
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// RBO's persistence: the weight of rank d + 1 relative to rank d (0.9: the top 10 carry
/// about 86 % of the weight).
pub const RBO_P: f64 = 0.9;
/// Latency samples kept for the summary's percentiles.
const SAMPLES: usize = 4096;

/// |a ∩ b| / k over the first `k` of each list.
pub fn overlap_at_k(a: &[u64], b: &[u64], k: usize) -> f64 {
    if k == 0 {
        return 1.0;
    }
    let a: HashSet<u64> = a.iter().take(k).copied().collect();
    b.iter().take(k).filter(|id| a.contains(id)).count() as f64 / k as f64
}

/// Extrapolated rank-biased overlap of two rankings of equal depth (Webber, Moffat and
/// Zobel 2010, eq. 32): 1 for identical lists, 0 for disjoint ones.
pub fn rbo(a: &[u64], b: &[u64], p: f64) -> f64 {
    let depth = a.len().min(b.len());
    if depth == 0 {
        return if a.len() == b.len() { 1.0 } else { 0.0 };
    }
    let (mut seen_a, mut seen_b) = (HashSet::new(), HashSet::new());
    let (mut shared, mut sum) = (0usize, 0.0);
    for d in 1..=depth {
        let (x, y) = (a[d - 1], b[d - 1]);
        if x == y {
            shared += 1;
        } else {
            shared += usize::from(seen_b.contains(&x)) + usize::from(seen_a.contains(&y));
        }
        seen_a.insert(x);
        seen_b.insert(y);
        sum += (shared as f64 / d as f64) * p.powi(d as i32);
    }
    let last = shared as f64 / depth as f64;
    last * p.powi(depth as i32) + (1.0 - p) / p * sum
}

/// What the summary says of a shadow variant.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowSummary {
    /// Shadow runs compared with their primary.
    pub runs: u64,
    /// Requests whose shadow run was shed (no spare capacity).
    pub shed: u64,
    /// Shadow runs that failed (no candidates, no ranker).
    pub failed: u64,
    /// Mean overlap@k with the primary answer.
    pub mean_overlap_at_k: f64,
    /// Mean RBO (p = 0.9) with the primary answer.
    pub mean_rbo: f64,
    /// Median and p99 time of the primary's candidates + ranking (ms).
    pub primary_ms: (f64, f64),
    /// The same for the shadow run (ms).
    pub shadow_ms: (f64, f64),
}

#[derive(Default)]
struct Acc {
    summary: ShadowSummary,
    overlap_sum: f64,
    rbo_sum: f64,
    primary: VecDeque<f64>,
    shadow: VecDeque<f64>,
}

/// The running comparison of one experiment's shadow variant.
pub struct ShadowStats {
    acc: Mutex<Acc>,
    runs: IntCounterVec,
    overlap: Histogram,
    rbo: Histogram,
    primary_seconds: Histogram,
    shadow_seconds: Histogram,
}

fn push(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == SAMPLES {
        q.pop_front();
    }
    q.push_back(v);
}

fn percentiles(q: &VecDeque<f64>) -> (f64, f64) {
    let mut v: Vec<f64> = q.iter().copied().collect();
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let at = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    (at(0.5), at(0.99))
}

impl ShadowStats {
    /// Stats whose metrics are registered with the node's.
    pub fn new(metrics: &Metrics) -> prometheus::Result<Self> {
        let unit = prometheus::linear_buckets(0.1, 0.1, 10)?;
        let lat = prometheus::exponential_buckets(0.000_05, 1.6, 20)?;
        let me = Self {
            acc: Mutex::new(Acc::default()),
            runs: IntCounterVec::new(
                Opts::new(
                    "recd_shadow_runs_total",
                    "Shadow runs by outcome (ran, shed, failed)",
                ),
                &["outcome"],
            )?,
            overlap: Histogram::with_opts(
                HistogramOpts::new(
                    "recd_shadow_overlap",
                    "Overlap@k of shadow and primary answers",
                )
                .buckets(unit.clone()),
            )?,
            rbo: Histogram::with_opts(
                HistogramOpts::new(
                    "recd_shadow_rank_correlation",
                    "RBO (p 0.9) of shadow and primary answers",
                )
                .buckets(unit),
            )?,
            primary_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "recd_shadow_primary_seconds",
                    "Candidates + ranking of shadowed primaries",
                )
                .buckets(lat.clone()),
            )?,
            shadow_seconds: Histogram::with_opts(
                HistogramOpts::new("recd_shadow_seconds", "Candidates + ranking of shadow runs")
                    .buckets(lat),
            )?,
        };
        metrics.register(Box::new(me.runs.clone()))?;
        metrics.register(Box::new(me.overlap.clone()))?;
        metrics.register(Box::new(me.rbo.clone()))?;
        metrics.register(Box::new(me.primary_seconds.clone()))?;
        metrics.register(Box::new(me.shadow_seconds.clone()))?;
        Ok(me)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Acc) -> R) -> R {
        f(&mut self.acc.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One shadow answer compared with its primary (both top-k id lists, best first).
    pub fn record(&self, primary: &[u64], shadow: &[u64], took: (Duration, Duration)) {
        let k = primary.len().max(shadow.len());
        let (o, r) = (
            overlap_at_k(primary, shadow, k),
            rbo(primary, shadow, RBO_P),
        );
        let (p, s) = (took.0.as_secs_f64(), took.1.as_secs_f64());
        self.runs.with_label_values(&["ran"]).inc();
        self.overlap.observe(o);
        self.rbo.observe(r);
        self.primary_seconds.observe(p);
        self.shadow_seconds.observe(s);
        self.with(|a| {
            a.summary.runs += 1;
            a.overlap_sum += o;
            a.rbo_sum += r;
            push(&mut a.primary, p * 1e3);
            push(&mut a.shadow, s * 1e3);
        });
    }

    /// `n` requests whose shadow run was shed.
    pub fn shed(&self, n: usize) {
        self.runs.with_label_values(&["shed"]).inc_by(n as u64);
        self.with(|a| a.summary.shed += n as u64);
    }

    /// `n` shadow runs that failed.
    pub fn failed(&self, n: usize) {
        self.runs.with_label_values(&["failed"]).inc_by(n as u64);
        self.with(|a| a.summary.failed += n as u64);
    }

    /// The summary so far.
    pub fn summary(&self) -> ShadowSummary {
        self.with(|a| {
            let n = a.summary.runs.max(1) as f64;
            ShadowSummary {
                mean_overlap_at_k: a.overlap_sum / n,
                mean_rbo: a.rbo_sum / n,
                primary_ms: percentiles(&a.primary),
                shadow_ms: percentiles(&a.shadow),
                ..a.summary.clone()
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_and_rbo_of_known_lists() {
        let a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(overlap_at_k(&a, &a, 10), 1.0);
        assert!((rbo(&a, &a, RBO_P) - 1.0).abs() < 1e-12);
        let disjoint: Vec<u64> = (11..21).collect();
        assert_eq!(overlap_at_k(&a, &disjoint, 10), 0.0);
        assert_eq!(rbo(&a, &disjoint, RBO_P), 0.0);
        // the same items reversed: full overlap, a lower rank correlation
        let rev: Vec<u64> = a.iter().rev().copied().collect();
        assert_eq!(overlap_at_k(&a, &rev, 10), 1.0);
        let r = rbo(&a, &rev, RBO_P);
        assert!(r > 0.3 && r < 1.0, "{r}");
        // a swap at the top costs more than one at the bottom
        let mut top = a;
        top.swap(0, 1);
        let mut bottom = a;
        bottom.swap(8, 9);
        assert!(rbo(&a, &top, RBO_P) < rbo(&a, &bottom, RBO_P));
        // half the items shared
        let half = [1, 2, 3, 4, 5, 31, 32, 33, 34, 35];
        assert_eq!(overlap_at_k(&a, &half, 10), 0.5);
    }

    #[test]
    fn the_summary_counts_and_averages() {
        let s = ShadowStats::new(&Metrics::new()).unwrap();
        let ms = Duration::from_millis;
        s.record(&[1, 2], &[1, 2], (ms(2), ms(1)));
        s.record(&[1, 2], &[3, 4], (ms(4), ms(3)));
        s.shed(3);
        s.failed(1);
        let sum = s.summary();
        assert_eq!((sum.runs, sum.shed, sum.failed), (2, 3, 1));
        assert!((sum.mean_overlap_at_k - 0.5).abs() < 1e-12);
        assert!((sum.mean_rbo - 0.5).abs() < 1e-12);
        assert_eq!(sum.primary_ms.1, 4.0);
    }
}
