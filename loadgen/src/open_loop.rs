//! Open loop: request i is scheduled at t0 + Σ gaps and sent then (or as soon as one of
//! `--connections` in-flight slots frees up), never waiting for earlier answers.
//! Latency counts from the scheduled time, so a stalled server shows up in every request
//! that should have been sent during the stall (no coordinated omission, as in wrk2);
//! service time, from the actual send, is recorded beside it.

use crate::cli::Args;
use crate::client::{Client, Outcome};
use crate::stats::{cpu_seconds_of, process_cpu_seconds, Run};
use crate::workload::Workload;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;
use tokio::sync::Semaphore;

/// Runs at `rate` requests/s for `duration` and returns what was measured; `seed` draws
/// the users, lanes and gaps (a sweep gives every step its own).
///
/// The schedule is kept by a dedicated OS thread sleeping with the kernel's
/// high-resolution timers (tokio's timer wheel has 1 ms granularity, which would show up
/// as latency); it hands each due request's scheduled time to the async dispatcher.
pub async fn run(args: &Args, client: &Client, rate: f64, duration: Duration, seed: u64) -> Run {
    let mut workload =
        Workload::from_args(args).unwrap_or_else(|e| panic!("invalid workload arguments: {e}"));
    workload.reseed(seed);
    let run = Arc::new(Mutex::new(Run::new(&workload.lanes, rate)));
    let slots = Arc::new(Semaphore::new(args.connections.max(1)));
    let cpu0 = process_cpu_seconds();
    let server0 = servers_cpu(&args.server_pid);
    let start = Instant::now();
    let progress = tokio::spawn(crate::report::progress(
        Arc::clone(&run),
        start.into(),
        duration,
    ));
    let (due_tx, mut due) = tokio::sync::mpsc::channel::<Instant>(1024);
    let mut gaps = workload.clone();
    let scheduler = std::thread::spawn(move || {
        // offsets accumulate in f64 seconds: summing rounded Durations would drift
        let (end, mut offset) = (duration.as_secs_f64() - 1e-9, 0.0);
        while offset < end {
            let next = start + Duration::from_secs_f64(offset);
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            if due_tx.blocking_send(next).is_err() {
                return;
            }
            offset = gaps.next_offset(offset, rate);
        }
    });
    let mut scheduled = 0u64;
    while let Some(at) = due.recv().await {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let sent = Instant::now();
        let pick = workload.pick();
        let lane = workload.lanes[pick.lane].clone();
        scheduled += 1;
        let (client, run) = (client.clone(), Arc::clone(&run));
        tokio::spawn(async move {
            let request = client.send(pick.body, &lane.name, lane.budget_ms);
            let outcome = match pick.cancel_after {
                Some(after) => tokio::time::timeout(after, request)
                    .await
                    .unwrap_or(Outcome::Cancelled),
                None => request.await,
            };
            let done = Instant::now();
            let mut run = run.lock().unwrap_or_else(|p| p.into_inner());
            run.note_lag(sent - at);
            run.record(pick.lane, outcome, done - at, done - sent);
            drop(permit);
        });
    }
    let _ = scheduler.join();
    // wait for the requests in flight (bounded by the client timeout)
    let all = args.connections.max(1) as u32;
    let _ = tokio::time::timeout(
        args.timeout + Duration::from_secs(1),
        slots.acquire_many(all),
    )
    .await;
    progress.abort();
    let mut run = take(&run);
    run.scheduled = scheduled;
    // rates are per second of schedule: answers that arrive after the window still count
    run.elapsed = duration;
    run.cpu_seconds = process_cpu_seconds() - cpu0;
    run.server_cpu_seconds = server0
        .zip(servers_cpu(&args.server_pid))
        .map(|(a, b)| b - a);
    run
}

/// CPU seconds of all `pids` together; `None` without pids or when one is gone.
pub(crate) fn servers_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_seconds_of(&p.to_string())).sum()
}

/// Takes the record out of the mutex (the progress task may still hold a reference).
pub(crate) fn take(run: &Mutex<Run>) -> Run {
    let mut guard = run.lock().unwrap_or_else(|p| p.into_inner());
    let lanes: Vec<_> = guard.lanes.iter().map(|l| l.lane.clone()).collect();
    let offered = guard.offered_rps;
    std::mem::replace(&mut *guard, Run::new(&lanes, offered))
}
