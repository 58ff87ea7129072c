//! Closed loop: `--connections` clients, each sending its next request when the last
//! answer arrived. Shown for comparison; it hides queueing (coordinated omission), so
//! latency and service time are the same number here.

use crate::cli::Args;
use crate::open_loop::{servers_cpu, take};
use crate::stats::{process_cpu_seconds, Run};
use crate::workload::Workload;
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// Runs for `--duration` and returns what was measured.
pub async fn run(args: &Args, client: &crate::client::Client) -> Run {
    let workload =
        Workload::from_args(args).unwrap_or_else(|e| panic!("invalid workload arguments: {e}"));
    let run = Arc::new(Mutex::new(Run::new(&workload.lanes, 0.0)));
    let cpu0 = process_cpu_seconds();
    let server0 = servers_cpu(&args.server_pid);
    let start = Instant::now();
    let end = start + args.duration;
    let progress = tokio::spawn(crate::report::progress(
        Arc::clone(&run),
        start,
        args.duration,
    ));
    let clients: Vec<_> = (0..args.connections.max(1))
        .map(|c| {
            let mut workload = workload.clone();
            workload.reseed(args.seed.wrapping_add(c as u64 + 1));
            let (client, run) = (client.clone(), Arc::clone(&run));
            tokio::spawn(async move {
                let mut sent = 0u64;
                while Instant::now() < end {
                    let pick = workload.pick();
                    let lane = workload.lanes[pick.lane].clone();
                    let t = Instant::now();
                    let outcome = client.send(pick.body, &lane.name, lane.budget_ms).await;
                    let d = t.elapsed();
                    run.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(pick.lane, outcome, d, d);
                    sent += 1;
                }
                sent
            })
        })
        .collect();
    let mut scheduled = 0;
    for c in clients {
        scheduled += c.await.unwrap_or(0);
    }
    progress.abort();
    let mut run = take(&run);
    run.scheduled = scheduled;
    run.elapsed = start.elapsed();
    run.cpu_seconds = process_cpu_seconds() - cpu0;
    run.server_cpu_seconds = server0
        .zip(servers_cpu(&args.server_pid))
        .map(|(a, b)| b - a);
    run
}
