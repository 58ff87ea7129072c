//! Results on disk (summary.json, sweep.csv, HDR interval logs, plots) and on the
//! terminal (a progress line, a closing summary).

use crate::cli::Args;
use crate::plot::{draw, Chart, Series};
use crate::stats::{Run, Summary};
use crate::sweep::SweepResult;
use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Prints a progress line to stderr every second until aborted.
pub async fn progress(run: Arc<Mutex<Run>>, start: Instant, duration: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let (finished, failures, p99) = {
            let r = run.lock().unwrap_or_else(|p| p.into_inner());
            let p99 = if r.latency.is_empty() {
                0.0
            } else {
                r.latency.value_at_quantile(0.99) as f64 / 1e3
            };
            (r.finished(), r.failures(), p99)
        };
        eprintln!(
            "[{:>5.1}/{:.0} s] finished {finished:>8} failed {failures:>6} p99 so far {p99:>8.2} ms",
            start.elapsed().as_secs_f64(),
            duration.as_secs_f64()
        );
    }
}

/// Prints the closing summary.
pub fn print_summary(s: &Summary) {
    eprintln!(
        "offered {:.0}/s achieved {:.0}/s goodput {:.0}/s (in budget {:.0}/s, degraded {}) | p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2} ms | \
         service p99 {:.2} ms | errors {:.2}% | loadgen cpu {:.2} cores{}",
        s.offered_rps,
        s.achieved_rps,
        s.goodput_rps,
        s.answered_in_budget_rps,
        s.degraded,
        s.p50_ms,
        s.p90_ms,
        s.p99_ms,
        s.p999_ms,
        s.max_ms,
        s.service_p99_ms,
        s.error_rate * 100.0,
        s.loadgen_cpu_cores,
        if s.kept_offered_rate { "" } else { " | WARNING: could not keep the offered rate" }
    );
}

/// Writes the outputs of an open or closed run.
pub fn write_single(args: &Args, run: &Run) -> anyhow::Result<()> {
    let summary = run.summary(args);
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    write_hdr_log(args, &[("run", run)])?;
    draw(
        &args.out.join("latency-cdf"),
        &cdf_chart(),
        &[
            cdf("corrected latency", &run.latency),
            cdf("service time", &run.service),
        ],
    )?;
    Ok(())
}

/// Writes the outputs of a sweep.
pub fn write_sweep(args: &Args, result: &SweepResult) -> anyhow::Result<()> {
    let summaries: Vec<&Summary> = result.steps.iter().map(|s| &s.summary).collect();
    let knee = result.knee();
    let doc = serde_json::json!({
        "knee_offered_rps": knee.map(|k| k.offered_rps),
        "knee": knee,
        "p99_bound_ms": args.p99_bound_ms,
        "max_error_rate": args.max_error_rate,
        "steps": summaries,
    });
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_vec_pretty(&doc)?,
    )?;
    let mut csv = std::fs::File::create(args.out.join("sweep.csv"))?;
    writeln!(csv, "offered_rps,achieved_rps,goodput_rps,answered_in_budget_rps,degraded,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,service_p99_ms,error_rate,ok")?;
    for s in &result.steps {
        let m = &s.summary;
        writeln!(
            csv,
            "{:.1},{:.1},{:.1},{:.1},{},{:.3},{:.3},{:.3},{:.3},{:.3},{:.3},{:.5},{}",
            m.offered_rps,
            m.achieved_rps,
            m.goodput_rps,
            m.answered_in_budget_rps,
            m.degraded,
            m.p50_ms,
            m.p90_ms,
            m.p99_ms,
            m.p999_ms,
            m.max_ms,
            m.service_p99_ms,
            m.error_rate,
            s.ok
        )?;
    }
    let tags: Vec<(String, &Run)> = result
        .steps
        .iter()
        .map(|s| (format!("rate-{:.0}", s.summary.offered_rps), &s.run))
        .collect();
    let tagged: Vec<(&str, &Run)> = tags.iter().map(|(t, r)| (t.as_str(), *r)).collect();
    write_hdr_log(args, &tagged)?;

    // one curve over the steps: x and y read from each step's summary
    let series = |x: fn(&Summary) -> f64, y: fn(&Summary) -> f64, label: &str| Series {
        label: label.into(),
        points: summaries.iter().map(|s| (x(s), y(s))).collect(),
    };
    let pct = |y, label| series(|s| s.achieved_rps, y, label);
    let by_offered = |y, label| series(|s| s.offered_rps, y, label);
    draw(
        &args.out.join("latency-throughput"),
        &Chart {
            title: "recd latency vs throughput",
            x_label: "achieved requests/s",
            y_label: "latency (ms)",
            log10_x: false,
        },
        &[
            pct(|s| s.p50_ms, "p50"),
            pct(|s| s.p90_ms, "p90"),
            pct(|s| s.p99_ms, "p99"),
        ],
    )?;
    draw(
        &args.out.join("goodput"),
        &Chart {
            title: "goodput vs offered load",
            x_label: "offered requests/s",
            y_label: "requests/s",
            log10_x: false,
        },
        &[
            by_offered(|s| s.goodput_rps, "undegraded within budget"),
            by_offered(|s| s.answered_in_budget_rps, "any 2xx within budget"),
            by_offered(|s| s.achieved_rps, "answered (any status)"),
        ],
    )?;
    let cdfs: Vec<Series> = result
        .steps
        .iter()
        .map(|s| cdf(&format!("{:.0}/s", s.summary.offered_rps), &s.run.latency))
        .collect();
    draw(&args.out.join("latency-cdf"), &cdf_chart(), &cdfs)?;
    let lanes: Vec<Series> = summaries
        .first()
        .map(|s| s.lanes.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|lane| Series {
            points: summaries
                .iter()
                .map(|s| (s.offered_rps, s.lanes[&lane].p99_ms))
                .collect(),
            label: lane,
        })
        .collect();
    draw(
        &args.out.join("lanes-p99"),
        &Chart {
            title: "p99 per lane vs offered load",
            x_label: "offered requests/s",
            y_label: "p99 (ms)",
            log10_x: false,
        },
        &lanes,
    )?;
    Ok(())
}

fn cdf_chart() -> Chart<'static> {
    Chart {
        title: "latency distribution",
        x_label: "latency (ms, log scale)",
        y_label: "percentile",
        log10_x: true,
    }
}

/// Percentile (0..100) against log10(latency ms).
fn cdf(label: &str, h: &Histogram<u64>) -> Series {
    let points = if h.is_empty() {
        Vec::new()
    } else {
        [
            0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9999, 1.0,
        ]
        .iter()
        .map(|&q| {
            (
                (h.value_at_quantile(q).max(1) as f64 / 1e3).log10(),
                q * 100.0,
            )
        })
        .collect()
    };
    Series {
        label: label.into(),
        points,
    }
}

/// One interval log with tagged histograms (`<tag>`, `<tag>-service`, `<tag>-<lane>`).
fn write_hdr_log(args: &Args, runs: &[(&str, &Run)]) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("recd-loadgen: corrected latency and service time in microseconds")
            .with_start_time(std::time::SystemTime::now())
            .begin_log_with(&mut buf, &mut serializer)?;
        let mut offset = Duration::ZERO;
        for (tag, run) in runs {
            let mut write = |h: &Histogram<u64>, t: String| {
                let tag = Tag::new(&t).ok_or_else(|| anyhow::anyhow!("bad hdr tag {t}"))?;
                log.write_histogram(h, offset, run.elapsed, Some(tag))
                    .map_err(|e| anyhow::anyhow!("hdr log: {e}"))
            };
            write(&run.latency, tag.to_string())?;
            write(&run.service, format!("{tag}-service"))?;
            for lane in &run.lanes {
                write(&lane.latency, format!("{tag}-{}", lane.lane.name))?;
            }
            offset += run.elapsed;
        }
    }
    std::fs::write(args.out.join("latency.hlog"), buf)?;
    Ok(())
}
