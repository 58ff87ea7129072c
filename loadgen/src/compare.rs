//! Compare mode: sweeps from earlier runs (`--inputs a,b --labels x,y`) drawn together,
//! e.g. deadline-sized vs fixed-delay batching under the same offered loads.

use crate::cli::Args;
use crate::plot::{draw, Chart, Series};
use anyhow::{ensure, Context};
use serde_json::Value;

/// Writes `compare-lanes-p99` and `compare-goodput` (PNG and SVG) to `--out`.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let inputs: Vec<&str> = args.inputs.split(',').filter(|s| !s.is_empty()).collect();
    let labels: Vec<&str> = args.labels.split(',').filter(|s| !s.is_empty()).collect();
    ensure!(
        !inputs.is_empty(),
        "--inputs needs at least one sweep folder"
    );
    ensure!(
        labels.len() == inputs.len(),
        "--labels needs one label per input"
    );
    let mut p99 = Vec::new();
    let mut goodput = Vec::new();
    let mut max_offered = 0f64;
    for (dir, label) in inputs.iter().zip(&labels) {
        let path = std::path::Path::new(dir).join("summary.json");
        let doc: Value = serde_json::from_slice(
            &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )
        .with_context(|| format!("parsing {}", path.display()))?;
        let steps = doc["steps"]
            .as_array()
            .with_context(|| format!("{} has no sweep steps", path.display()))?;
        let num = |v: &Value| v.as_f64().unwrap_or(0.0);
        goodput.push(Series {
            label: label.to_string(),
            points: steps
                .iter()
                .map(|s| (num(&s["offered_rps"]), num(&s["goodput_rps"])))
                .collect(),
        });
        max_offered = steps
            .iter()
            .map(|s| num(&s["offered_rps"]))
            .fold(max_offered, f64::max);
        let lanes: Vec<String> = steps
            .first()
            .and_then(|s| s["lanes"].as_object())
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        for lane in lanes {
            p99.push(Series {
                label: format!("{label} {lane}"),
                points: steps
                    .iter()
                    .map(|s| (num(&s["offered_rps"]), num(&s["lanes"][&lane]["p99_ms"])))
                    .collect(),
            });
        }
    }
    goodput.push(Series {
        label: "offered".into(),
        points: vec![(0.0, 0.0), (max_offered, max_offered)],
    });
    std::fs::create_dir_all(&args.out)?;
    draw(
        &args.out.join("compare-lanes-p99"),
        &Chart {
            title: "p99 per lane vs offered load",
            x_label: "offered requests/s",
            y_label: "p99 (ms)",
            log10_x: false,
        },
        &p99,
    )?;
    draw(
        &args.out.join("compare-goodput"),
        &Chart {
            title: "goodput (2xx within budget) vs offered load",
            x_label: "offered requests/s",
            y_label: "goodput requests/s",
            log10_x: false,
        },
        &goodput,
    )?;
    Ok(())
}
