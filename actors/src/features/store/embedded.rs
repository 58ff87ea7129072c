//! The embedded backend: one redb file per feature shard (`<data_dir>/store/features-<s>.redb`),
//! written by one writer thread that group-commits — it takes every job queued while the
//! previous commit was syncing, applies them in one transaction and fsyncs once — so an
//! acknowledged write is on disk and many small writers share one fsync (ADR 0015).
//!
//! Tables: `profiles` (user id → codec bytes), `events` (event id → applied at, ms) and
//! `events_by_time` ((ms, event id)) to forget event ids past the dedupe window.
//! Reads open a read transaction of their own (redb is MVCC: they never wait for the
//! writer).

use super::{apply_ops, Committed, Done, FoldContext, ProfileStore, ReadResult};
use crate::types::WriteOp;
use anyhow::Context;
use futures_util::future::BoxFuture;
use prometheus::Histogram;
use recd_runtime::RecdError;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

const PROFILES: TableDefinition<&str, &[u8]> = TableDefinition::new("profiles");
const EVENTS: TableDefinition<&str, u64> = TableDefinition::new("events");
const EVENTS_BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("events_by_time");
/// `layout` → "s/S": the shard this file holds, of how many (users are placed by it).
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");

/// Jobs queued for the writer before writes are refused.
const QUEUE: usize = 256;
/// Jobs one commit takes at most.
const GROUP: usize = 64;
/// Event ids forgotten per commit at most (the rest wait for the next one).
const PRUNE: usize = 1024;

struct Job {
    ops: Vec<WriteOp>,
    done: Done,
}

/// A shard's redb store and the sender to its writer thread.
pub struct Embedded {
    db: Arc<Database>,
    jobs: Option<SyncSender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// How the writer is set up.
pub struct WriterSettings {
    /// How writes are applied.
    pub fold: FoldContext,
    /// How long an event id is remembered (a retry later than this applies again).
    pub dedupe_window: Duration,
    /// Commit latency (`recd_store_commit_seconds`).
    pub commit_seconds: Histogram,
    /// The shard this store holds, and the shard count (checked against the file's).
    pub layout: (usize, usize),
    /// How long the writer gathers jobs after the first before it commits (zero: only
    /// what is already queued). Trades that much write latency for fewer fsyncs.
    pub window: Duration,
}

impl Embedded {
    /// Opens (or creates) the store at `path` and starts its writer thread, which ends
    /// when the store is dropped.
    pub fn open(path: &Path, settings: WriterSettings) -> anyhow::Result<Self> {
        let db = crate::redb_file::open(path)?;
        let txn = db.begin_write()?;
        txn.open_table(PROFILES)?;
        txn.open_table(EVENTS)?;
        txn.open_table(EVENTS_BY_TIME)?;
        {
            let want = format!("{}/{}", settings.layout.0, settings.layout.1);
            let mut meta = txn.open_table(META)?;
            let held = meta.get("layout")?.map(|v| v.value().to_owned());
            match held {
                Some(h) if h != want => anyhow::bail!(
                    "{} holds feature shard {h} but the config places shard {want} there:                      features.shards changed (users would be looked up in the wrong shard)",
                    path.display()
                ),
                Some(_) => {}
                None => {
                    meta.insert("layout", want.as_str())?;
                }
            }
        }
        txn.commit()?;
        let db = Arc::new(db);
        let (jobs, rx) = sync_channel(QUEUE);
        let writer_db = Arc::clone(&db);
        let name = format!(
            "store-{}",
            path.file_stem().unwrap_or_default().to_string_lossy()
        );
        let writer = std::thread::Builder::new()
            .name(name)
            .spawn(move || writer(&writer_db, &rx, &settings))
            .context("starting the store writer")?;
        Ok(Self {
            db,
            jobs: Some(jobs),
            writer: Some(writer),
        })
    }

    /// Profiles stored (for `recd_store_profiles` and tests).
    pub fn profiles(&self) -> anyhow::Result<u64> {
        Ok(self.db.begin_read()?.open_table(PROFILES)?.len()?)
    }
}

impl Embedded {
    fn read_now(&self, users: &[Arc<str>]) -> ReadResult {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(PROFILES)?;
        users
            .iter()
            .map(|u| Ok(table.get(&**u)?.map(|v| v.value().to_vec())))
            .collect()
    }
}

impl ProfileStore for Embedded {
    /// Reads in place: a local file in the page cache (see ADR 0015).
    fn read<'a>(&'a self, users: &'a [Arc<str>], _: Duration) -> BoxFuture<'a, ReadResult> {
        Box::pin(std::future::ready(self.read_now(users)))
    }

    fn write(&self, ops: Vec<WriteOp>, done: Done) -> Result<(), RecdError> {
        let Some(jobs) = &self.jobs else {
            return Err(RecdError::unavailable("feature store closed"));
        };
        match jobs.try_send(Job { ops, done }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                Err(RecdError::overloaded("feature store write queue is full"))
            }
            Err(TrySendError::Disconnected(_)) => {
                Err(RecdError::unavailable("feature store writer stopped"))
            }
        }
    }
}

impl Drop for Embedded {
    /// Lets the writer finish what is queued, then closes the file (it can be reopened
    /// at once).
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The writer loop: a group of jobs per transaction, one fsync per group.
fn writer(db: &Database, rx: &Receiver<Job>, settings: &WriterSettings) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let close = std::time::Instant::now() + settings.window;
        while group.len() < GROUP {
            let left = close.saturating_duration_since(std::time::Instant::now());
            let next = match left.is_zero() {
                true => rx.try_recv().ok(),
                false => rx.recv_timeout(left).ok(),
            };
            match next {
                Some(job) => group.push(job),
                None => break,
            }
        }
        let timer = settings.commit_seconds.start_timer();
        let (results, committed) = match commit(db, &group, settings) {
            Ok(results) => (results, Ok(())),
            Err(e) => (
                Vec::new(),
                Err(RecdError::unavailable(format!("feature store: {e:#}"))),
            ),
        };
        timer.observe_duration();
        if let Err(e) = &committed {
            tracing::error!(error = %e, "feature store commit failed");
        }
        let mut results = results.into_iter();
        for job in group {
            let r = match &committed {
                Ok(()) => results
                    .next()
                    .unwrap_or_else(|| Err(RecdError::unavailable("feature store: no result"))),
                Err(e) => Err(e.clone()),
            };
            (job.done)(r);
        }
    }
}

/// Applies `group` in one durable transaction; a job that cannot apply fails alone.
fn commit(
    db: &Database,
    group: &[Job],
    settings: &WriterSettings,
) -> anyhow::Result<Vec<Result<Committed, RecdError>>> {
    let now = recd_runtime::clock::unix_time();
    let now_ms = now.as_millis() as u64;
    let txn = db.begin_write()?;
    let mut results = Vec::with_capacity(group.len());
    {
        let mut profiles = txn.open_table(PROFILES)?;
        let mut events = txn.open_table(EVENTS)?;
        let mut by_time = txn.open_table(EVENTS_BY_TIME)?;
        for job in group {
            let applied = apply_ops(
                &settings.fold,
                &job.ops,
                now.as_secs(),
                |u| Ok(profiles.get(u)?.map(|v| v.value().to_vec())),
                |id| Ok(events.get(id)?.is_some()),
            );
            let (committed, new_events) = match applied {
                Ok(a) => a,
                Err(e) => {
                    results.push(Err(super::refused(&e)));
                    continue;
                }
            };
            for (user, bytes) in &committed.changed {
                match bytes {
                    Some(b) => profiles.insert(&**user, b.as_slice())?,
                    None => profiles.remove(&**user)?,
                };
            }
            for id in &new_events {
                events.insert(&**id, now_ms)?;
                by_time.insert((now_ms, &**id), ())?;
            }
            results.push(Ok(committed));
        }
        let cutoff = now_ms.saturating_sub(settings.dedupe_window.as_millis() as u64);
        let expired: Vec<(u64, String)> = by_time
            .range::<(u64, &str)>(..(cutoff, ""))?
            .take(PRUNE)
            .map(|e| e.map(|(k, _)| (k.value().0, k.value().1.to_owned())))
            .collect::<Result<_, _>>()?;
        for (at, id) in &expired {
            by_time.remove((*at, id.as_str()))?;
            events.remove(id.as_str())?;
        }
    }
    txn.commit()?;
    Ok(results)
}
