//! recd-loadgen: a load generator that measures recd honestly.
//!
//! - [`cli`]: the command line (`--url`, `--mode open|closed|sweep`, `--rate`, ...).
//! - [`workload`]: seeded choices per request: user id (uniform, zipf, hot set), lane,
//!   arrival gaps (constant or Poisson), cancellation.
//! - [`client`]: one HTTP/1.1 request to `POST {url}/recommend`, classified.
//! - [`open_loop`]: requests on a schedule; latency from the *scheduled* send time
//!   (no coordinated omission), service time from the actual send beside it.
//! - [`closed_loop`]: N connections, each sending when its last answer came back.
//! - [`sweep`]: open-loop steps at rising rates until p99 or errors pass a bound.
//! - [`stats`], [`report`], [`plot`]: HDR histograms, summary.json / CSV / HDR logs,
//!   PNG and SVG plots; [`compare`] draws several sweeps together.
//! - [`writers`]: clicks and item upserts at fixed rates beside the reads (writes.json).
//!
//! It depends on recd-runtime's API types only and talks HTTP to the URL it is given.

pub mod cli;
pub mod client;
pub mod closed_loop;
pub mod compare;
pub mod open_loop;
pub mod plot;
pub mod report;
pub mod stats;
pub mod sweep;
pub mod workload;
pub mod writers;

/// Runs the mode chosen on the command line and writes the results to `--out`.
pub async fn run(args: cli::Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    let client = || client::Client::new(&args.url, args.timeout);
    match args.mode {
        cli::Mode::Open => {
            let writes = spawn_writers(&args);
            let run = open_loop::run(&args, &client()?, args.rate, args.duration, args.seed).await;
            report::write_single(&args, &run)?;
            report::print_summary(&run.summary(&args));
            finish_writers(&args, writes).await?;
        }
        cli::Mode::Closed => {
            let writes = spawn_writers(&args);
            let run = closed_loop::run(&args, &client()?).await;
            report::write_single(&args, &run)?;
            report::print_summary(&run.summary(&args));
            finish_writers(&args, writes).await?;
        }
        cli::Mode::Sweep => {
            let result = sweep::run(&args, &client()?).await;
            report::write_sweep(&args, &result)?;
            match result.knee() {
                Some(k) => eprintln!(
                    "knee: {:.0} req/s offered (p99 {:.2} ms)",
                    k.offered_rps, k.p99_ms
                ),
                None => eprintln!("knee: none (the first step already broke the bound)"),
            }
        }
        cli::Mode::Compare => compare::run(&args)?,
    }
    Ok(())
}

type Writers = Option<tokio::task::JoinHandle<writers::WriteReport>>;

/// The writers of `--events-rps` / `--item-upserts-rps`, for the run's duration.
fn spawn_writers(args: &cli::Args) -> Writers {
    (args.events_rps > 0.0 || args.item_upserts_rps > 0.0).then(|| {
        let (url, ev, up, d, seed) = (
            args.url.clone(),
            args.events_rps,
            args.item_upserts_rps,
            args.duration,
            args.seed,
        );
        let sizes = (workload::USERS, args.items);
        tokio::spawn(async move { writers::run(&url, ev, up, d, seed, sizes).await })
    })
}

/// Waits for the writers; prints and writes `writes.json`.
async fn finish_writers(args: &cli::Args, writes: Writers) -> anyhow::Result<()> {
    if let Some(w) = writes {
        let report = w.await?;
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(args.out.join("writes.json"), &json)?;
        eprintln!("writes: {json}");
    }
    Ok(())
}
