//! What a run measured: HDR histograms of corrected latency and service time, overall
//! and per lane, and counts by outcome.

use crate::cli::Args;
use crate::client::Outcome;
use crate::workload::Lane;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// Histograms count microseconds from 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Per-lane results.
pub struct LaneStats {
    /// The lane.
    pub lane: Lane,
    /// Corrected latency of answered requests.
    pub latency: Histogram<u64>,
    /// 2xx answers.
    pub ok: u64,
    /// 2xx answers within the lane's budget.
    pub ok_in_budget: u64,
    /// 2xx answers within the budget that took no rung of the ladder (goodput).
    pub good: u64,
    /// 2xx answers that took at least one rung.
    pub degraded: u64,
    /// 429 and 503 answers.
    pub shed: u64,
    /// Requests that ended (not counting deliberate cancellations).
    pub requests: u64,
    /// Those that got no 2xx: any other status, a timeout, an error.
    pub failed: u64,
}

/// Everything recorded during one run.
pub struct Run {
    /// Offered rate (open loop) or 0 (closed loop).
    pub offered_rps: f64,
    /// Requests scheduled.
    pub scheduled: u64,
    /// Measured wall time of the run.
    pub elapsed: Duration,
    /// Latency from the scheduled send time to the answer.
    pub latency: Histogram<u64>,
    /// Latency from the actual send to the answer.
    pub service: Histogram<u64>,
    /// Per lane.
    pub lanes: Vec<LaneStats>,
    /// Counts by outcome: "200", "503", "timeout", "error", "cancelled".
    pub outcomes: BTreeMap<String, u64>,
    /// 2xx answers per rung of the degradation ladder they name.
    pub rungs: BTreeMap<&'static str, u64>,
    /// Worst delay between a request's scheduled and actual send.
    pub max_send_lag: Duration,
    /// Requests sent more than 10 ms after their scheduled time.
    pub late_sends: u64,
    /// CPU seconds the generator process used during the run.
    pub cpu_seconds: f64,
    /// CPU seconds the server (`--server-pid`) used during the run.
    pub server_cpu_seconds: Option<f64>,
}

impl Run {
    /// An empty record for these lanes.
    pub fn new(lanes: &[Lane], offered_rps: f64) -> Self {
        Self {
            offered_rps,
            scheduled: 0,
            elapsed: Duration::ZERO,
            latency: histogram(),
            service: histogram(),
            lanes: lanes
                .iter()
                .map(|l| LaneStats {
                    lane: l.clone(),
                    latency: histogram(),
                    ok: 0,
                    ok_in_budget: 0,
                    good: 0,
                    degraded: 0,
                    shed: 0,
                    requests: 0,
                    failed: 0,
                })
                .collect(),
            outcomes: BTreeMap::new(),
            rungs: BTreeMap::new(),
            max_send_lag: Duration::ZERO,
            late_sends: 0,
            cpu_seconds: 0.0,
            server_cpu_seconds: None,
        }
    }

    /// Notes a send `lag` after its schedule.
    pub fn note_lag(&mut self, lag: Duration) {
        self.max_send_lag = self.max_send_lag.max(lag);
        self.late_sends += u64::from(lag > Duration::from_millis(10));
    }

    /// Records one finished request.
    pub fn record(&mut self, lane: usize, outcome: Outcome, latency: Duration, service: Duration) {
        let key = match outcome {
            Outcome::Status(s, _) => s.to_string(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Error => "error".into(),
            Outcome::Cancelled => "cancelled".into(),
        };
        *self.outcomes.entry(key).or_default() += 1;
        if outcome == Outcome::Cancelled {
            return;
        }
        let us = |d: Duration| (d.as_micros() as u64).clamp(1, 60_000_000);
        self.latency.saturating_record(us(latency));
        self.service.saturating_record(us(service));
        let l = &mut self.lanes[lane];
        l.latency.saturating_record(us(latency));
        l.requests += 1;
        l.failed += u64::from(!matches!(outcome, Outcome::Status(200..=299, _)));
        match outcome {
            Outcome::Status(s, rungs) if (200..300).contains(&s) => {
                l.ok += 1;
                let budget = l.lane.budget_ms.map(Duration::from_millis);
                let in_budget = budget.is_none_or(|b| latency <= b);
                l.ok_in_budget += u64::from(in_budget);
                l.good += u64::from(in_budget && rungs.is_empty());
                l.degraded += u64::from(!rungs.is_empty());
                for rung in rungs.names() {
                    *self.rungs.entry(rung).or_default() += 1;
                }
            }
            Outcome::Status(429 | 503, _) => l.shed += 1,
            _ => {}
        }
    }

    /// Answers that are not 2xx and not deliberate cancellations.
    pub fn failures(&self) -> u64 {
        self.outcomes
            .iter()
            .filter(|(k, _)| !(k.starts_with('2') || *k == "cancelled"))
            .map(|(_, v)| v)
            .sum()
    }

    /// Requests that finished in any way.
    pub fn finished(&self) -> u64 {
        self.outcomes.values().sum()
    }

    /// The summary.json view.
    pub fn summary(&self, args: &Args) -> Summary {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1e3
            }
        };
        let errors = self
            .outcomes
            .iter()
            .filter(|(k, _)| !k.starts_with('2'))
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let lanes = self
            .lanes
            .iter()
            .map(|l| {
                let s = LaneSummary {
                    p50_ms: ms(&l.latency, 0.5),
                    p99_ms: ms(&l.latency, 0.99),
                    ok: l.ok,
                    degraded: l.degraded,
                    shed: l.shed,
                    requests: l.requests,
                    failed: l.failed,
                    goodput_rps: l.good as f64 / secs,
                    answered_in_budget_rps: l.ok_in_budget as f64 / secs,
                    budget_ms: l.lane.budget_ms,
                };
                (l.lane.name.clone(), s)
            })
            .collect();
        let answered = self.finished() - self.outcomes.get("cancelled").copied().unwrap_or(0);
        Summary {
            label: args.label.clone(),
            mode: format!("{:?}", args.mode).to_lowercase(),
            offered_rps: self.offered_rps,
            achieved_rps: answered as f64 / secs,
            goodput_rps: self.lanes.iter().map(|l| l.good).sum::<u64>() as f64 / secs,
            answered_in_budget_rps: self.lanes.iter().map(|l| l.ok_in_budget).sum::<u64>() as f64
                / secs,
            degraded: self.lanes.iter().map(|l| l.degraded).sum(),
            rungs: self
                .rungs
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            scheduled: self.scheduled,
            finished: self.finished(),
            duration_s: secs,
            p50_ms: ms(&self.latency, 0.5),
            p90_ms: ms(&self.latency, 0.9),
            p99_ms: ms(&self.latency, 0.99),
            p999_ms: ms(&self.latency, 0.999),
            max_ms: self.latency.max() as f64 / 1e3,
            service_p50_ms: ms(&self.service, 0.5),
            service_p99_ms: ms(&self.service, 0.99),
            errors,
            error_rate: self.failures() as f64 / self.finished().max(1) as f64,
            lanes,
            max_send_lag_ms: self.max_send_lag.as_secs_f64() * 1e3,
            late_sends: self.late_sends,
            kept_offered_rate: self.late_sends as f64 <= 0.01 * self.scheduled as f64,
            loadgen_cpu_seconds: self.cpu_seconds,
            loadgen_cpu_cores: self.cpu_seconds / secs,
            server_cpu_cores: self.server_cpu_seconds.map(|c| c / secs),
            server_cpu_us_per_request: self
                .server_cpu_seconds
                .map(|c| c * 1e6 / answered.max(1) as f64),
            connections: args.connections,
        }
    }
}

/// summary.json.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `--label`.
    pub label: String,
    /// open | closed | sweep.
    pub mode: String,
    /// Offered requests/s (0 for closed loop).
    pub offered_rps: f64,
    /// Answers per second (all statuses).
    pub achieved_rps: f64,
    /// Undegraded 2xx answers (no rung of the ladder, full coverage) within their lane's
    /// budget per second: what users fully got.
    pub goodput_rps: f64,
    /// Every 2xx answer within its lane's budget per second, degraded or not.
    pub answered_in_budget_rps: f64,
    /// 2xx answers that took at least one rung.
    pub degraded: u64,
    /// 2xx answers per rung (`features`, `candidates`, `rank_truncated`, `ranker`,
    /// `partial` = coverage < 1, `unreadable`, `other`).
    pub rungs: BTreeMap<String, u64>,
    /// Requests scheduled.
    pub scheduled: u64,
    /// Requests finished (answered, failed or cancelled).
    pub finished: u64,
    /// Wall time.
    pub duration_s: f64,
    /// Corrected latency percentiles (from the scheduled send time).
    pub p50_ms: f64,
    /// p90.
    pub p90_ms: f64,
    /// p99.
    pub p99_ms: f64,
    /// p99.9.
    pub p999_ms: f64,
    /// Worst.
    pub max_ms: f64,
    /// Service time (from the actual send) p50.
    pub service_p50_ms: f64,
    /// Service time p99.
    pub service_p99_ms: f64,
    /// Non-2xx outcomes by status or kind.
    pub errors: BTreeMap<String, u64>,
    /// Failed fraction (non-2xx, not counting deliberate cancellations).
    pub error_rate: f64,
    /// Per lane.
    pub lanes: BTreeMap<String, LaneSummary>,
    /// Worst send delay behind schedule.
    pub max_send_lag_ms: f64,
    /// Sends more than 10 ms late.
    pub late_sends: u64,
    /// False when more than 1 % of sends were late: the generator could not offer the rate.
    pub kept_offered_rate: bool,
    /// CPU the generator used.
    pub loadgen_cpu_seconds: f64,
    /// CPU cores the generator used on average.
    pub loadgen_cpu_cores: f64,
    /// CPU cores the server used on average (with `--server-pid`).
    pub server_cpu_cores: Option<f64>,
    /// Server CPU microseconds per answered request (with `--server-pid`).
    pub server_cpu_us_per_request: Option<f64>,
    /// In-flight bound (open) or clients (closed).
    pub connections: usize,
}

/// Per-lane part of summary.json.
#[derive(Debug, Clone, Serialize)]
pub struct LaneSummary {
    /// Corrected p50.
    pub p50_ms: f64,
    /// Corrected p99.
    pub p99_ms: f64,
    /// 2xx answers.
    pub ok: u64,
    /// 2xx answers that took at least one rung.
    pub degraded: u64,
    /// 429/503 answers.
    pub shed: u64,
    /// Requests that ended (not counting deliberate cancellations).
    pub requests: u64,
    /// Those that got no 2xx (any other status, timeouts, errors).
    pub failed: u64,
    /// Undegraded 2xx within budget per second.
    pub goodput_rps: f64,
    /// Every 2xx within budget per second.
    pub answered_in_budget_rps: f64,
    /// The lane's budget.
    pub budget_ms: Option<u64>,
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
pub fn process_cpu_seconds() -> f64 {
    cpu_seconds_of("self").unwrap_or(0.0)
}

/// CPU seconds (user + system) of process `pid` (`"self"` for this one), assuming the
/// usual 100 clock ticks per second.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // fields after the ")" that closes the command name; utime and stime are 14 and 15
    let rest = stat.rsplit(')').next()?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((ticks(11)? + ticks(12)?) / 100.0)
}
