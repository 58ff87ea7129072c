//! Sweep: open-loop steps at `--sweep-start`, × `--sweep-factor` each step, until p99
//! passes `--p99-bound-ms`, errors pass `--max-error-rate`, or the generator cannot
//! offer the rate; then `--sweep-refine` bisection steps between the last rate that met
//! the bounds and the first that did not. The knee is the highest offered rate that met
//! every bound.

use crate::cli::Args;
use crate::client::Client;
use crate::stats::{Run, Summary};

/// One step of the sweep.
pub struct Step {
    /// What was measured.
    pub run: Run,
    /// Its summary.
    pub summary: Summary,
    /// Whether it met the bounds.
    pub ok: bool,
}

/// All steps.
pub struct SweepResult {
    /// Steps in the order run.
    pub steps: Vec<Step>,
}

impl SweepResult {
    /// The highest offered rate that met the bounds.
    pub fn knee(&self) -> Option<&Summary> {
        self.steps
            .iter()
            .filter(|s| s.ok)
            .map(|s| &s.summary)
            .max_by(|a, b| a.offered_rps.total_cmp(&b.offered_rps))
    }
}

/// Whether a step meets the sweep's bounds.
pub fn meets_bounds(args: &Args, s: &Summary) -> bool {
    s.p99_ms <= args.p99_bound_ms && s.error_rate <= args.max_error_rate && s.kept_offered_rate
}

/// Runs the sweep.
pub async fn run(args: &Args, client: &Client) -> SweepResult {
    let mut steps = Vec::new();
    if let Some(rates) = &args.rates {
        for rate in rates
            .split(',')
            .filter_map(|r| r.trim().parse::<f64>().ok())
            .filter(|r| *r > 0.0)
        {
            steps.push(run_step(args, client, rate, steps.len()).await);
        }
        return SweepResult { steps };
    }
    let mut rate = args.sweep_start;
    let mut bracket = None;
    while rate <= args.sweep_max {
        let step = run_step(args, client, rate, steps.len()).await;
        let ok = step.ok;
        steps.push(step);
        if !ok {
            bracket = Some((rate / args.sweep_factor, rate));
            break;
        }
        rate *= args.sweep_factor;
    }
    if let Some((mut lo, mut hi)) = bracket.filter(|_| steps.len() > 1) {
        for _ in 0..args.sweep_refine {
            let mid = (lo + hi) / 2.0;
            let step = run_step(args, client, mid, steps.len()).await;
            if step.ok {
                lo = mid;
            } else {
                hi = mid;
            }
            steps.push(step);
        }
    }
    steps.sort_by(|a, b| a.summary.offered_rps.total_cmp(&b.summary.offered_rps));
    SweepResult { steps }
}

/// Step `n` (0, 1, ...) at `rate`: its own random stream (seed `--seed` + n), so with
/// uniform users no step replays an earlier one's and finds the feature cache warm for
/// them (a zipf or hot-set mix keeps its hot ids, as it should); reproducible by seed.
async fn run_step(args: &Args, client: &Client, rate: f64, n: usize) -> Step {
    let seed = args.seed.wrapping_add(n as u64);
    let run = crate::open_loop::run(args, client, rate, args.duration, seed).await;
    let summary = run.summary(args);
    let ok = meets_bounds(args, &summary);
    eprintln!(
        "sweep: offered {:>8.0}/s achieved {:>8.0}/s p50 {:>7.2} ms p99 {:>8.2} ms errors {:.2}% {}",
        summary.offered_rps,
        summary.achieved_rps,
        summary.p50_ms,
        summary.p99_ms,
        summary.error_rate * 100.0,
        if ok { "ok" } else { "past the bound" }
    );
    Step { run, summary, ok }
}
