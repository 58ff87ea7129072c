//! Command-line arguments of recd-loadgen.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// How load is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Requests on a schedule at `--rate`, whatever the answers do.
    Open,
    /// `--connections` clients, each sending when its previous answer arrived.
    Closed,
    /// Open-loop steps at rising rates until p99 or errors pass their bounds (or at the
    /// exact `--rates`).
    Sweep,
    /// Draw sweeps from earlier runs (`--inputs`) into comparison plots.
    Compare,
}

/// Gaps between scheduled requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Arrivals {
    /// Exactly 1/rate apart.
    Constant,
    /// Exponential gaps (a Poisson process) with mean 1/rate.
    Poisson,
    /// On/off bursts: `--burst-duty` of every `--burst-period` at rate / duty, silence
    /// the rest; the same mean rate.
    Onoff,
}

/// recd-loadgen: open-loop load with corrected latency, sweeps and plots.
#[derive(Debug, Clone, Parser)]
#[command(name = "recd-loadgen", version)]
pub struct Args {
    /// Base URL of the node, e.g. http://127.0.0.1:8080; several, comma-separated, are
    /// used in turn (a cluster's ingress nodes).
    #[arg(long, default_value = "")]
    pub url: String,
    /// open | closed | sweep.
    #[arg(long, value_enum, default_value = "open")]
    pub mode: Mode,
    /// Offered requests/s (open).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// constant | poisson (open, sweep).
    #[arg(long, value_enum, default_value = "constant")]
    pub arrivals: Arrivals,
    /// Closed: concurrent clients. Open/sweep: the most requests in flight at once.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,
    /// Length of a run (or of each sweep step): 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Lane mix as name=weight, sent as X-Priority.
    #[arg(long, default_value = "default=100")]
    pub lanes: String,
    /// Per-lane budgets in ms, sent as X-Deadline-Ms; goodput counts 2xx within them.
    #[arg(long, default_value = "critical=100,default=200,background=500")]
    pub deadlines: String,
    /// User ids: uniform | zipf:S | hot:N:FRACTION (N hot ids get FRACTION of requests).
    #[arg(long, default_value = "uniform")]
    pub users: String,
    /// Items asked per request.
    #[arg(long, default_value_t = 10)]
    pub topk: u32,
    /// Open/closed: also send this many click events per second (one per request).
    #[arg(long, default_value_t = 0.0)]
    pub events_rps: f64,
    /// Open/closed: also send this many item upserts per second.
    #[arg(long, default_value_t = 0.0)]
    pub item_upserts_rps: f64,
    /// Items in the node's catalogue (the clicks' item ids are drawn below it).
    #[arg(long, default_value_t = 200_000)]
    pub items: u64,
    /// Fraction of requests whose connection is dropped mid-flight.
    #[arg(long, default_value_t = 0.0)]
    pub cancel_fraction: f64,
    /// Client timeout per request.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Output folder.
    #[arg(long, default_value = "loadgen-out")]
    pub out: PathBuf,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Sweep: first offered rate.
    #[arg(long, default_value_t = 200.0)]
    pub sweep_start: f64,
    /// Sweep: each step offers this many times the previous rate.
    #[arg(long, default_value_t = 1.25)]
    pub sweep_factor: f64,
    /// Sweep: run exactly these offered rates (comma-separated), without stopping.
    #[arg(long)]
    pub rates: Option<String>,
    /// On/off arrivals: length of one on+off cycle.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub burst_period: Duration,
    /// On/off arrivals: fraction of each cycle with traffic.
    #[arg(long, default_value_t = 0.5)]
    pub burst_duty: f64,
    /// Compare: sweep output folders to draw together (comma-separated).
    #[arg(long, default_value = "")]
    pub inputs: String,
    /// Compare: a label per input (comma-separated).
    #[arg(long, default_value = "")]
    pub labels: String,
    /// Sweep: bisection steps between the last passing and the first failing rate.
    #[arg(long, default_value_t = 2)]
    pub sweep_refine: usize,
    /// Sweep: never offer more than this.
    #[arg(long, default_value_t = 50_000.0)]
    pub sweep_max: f64,
    /// Sweep: stop once p99 passes this (ms).
    #[arg(long, default_value_t = 50.0)]
    pub p99_bound_ms: f64,
    /// Sweep: stop once this fraction of requests fails.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_rate: f64,
    /// Tokio worker threads of the generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// PIDs of the servers on this machine (comma-separated): their CPU use per run is
    /// reported beside ours, summed.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Label written into summary.json.
    #[arg(long, default_value = "")]
    pub label: String,
}

/// Parses `10s`, `500ms`, `2m` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let v: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => v / 1e3,
        "s" => v,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m)")),
    };
    if !(secs > 0.0 && secs <= 3600.0) {
        return Err(format!("duration {s:?} must be in (0, 1h]"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `a=1,b=2.5` into pairs.
pub fn parse_pairs(s: &str) -> Result<Vec<(String, f64)>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("expected name=value in {p:?}"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("bad number in {p:?}"))?;
            if !(v >= 0.0 && v.is_finite()) {
                return Err(format!("negative or non-finite value in {p:?}"));
            }
            Ok((k.trim().to_owned(), v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_pairs_parse() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(
            parse_duration("0s").is_err()
                && parse_duration("5h").is_err()
                && parse_duration("x").is_err()
        );
        let p = parse_pairs("critical=5, default=25,background=70").unwrap();
        assert_eq!(p[2], ("background".to_string(), 70.0));
        assert!(parse_pairs("a=-1").is_err() && parse_pairs("a").is_err());
    }
}
