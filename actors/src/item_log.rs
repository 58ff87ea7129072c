//! Item writes in a cluster (ADR 0017): one Redis Stream, `<prefix>:items`, on the
//! shared store. The ingress appends a change (durable once Redis replies: the server
//! runs `appendfsync always`, checked at start by the feature store); every node tails
//! the stream and applies each change, in stream order, to its item overlay and to the
//! index shards it holds ([`Applier`]). A node that starts — or restarts after being
//! down — replays the stream from the start before it serves, so it catches up from the
//! catalogue its index snapshot was built from.
//!
//! ```text
//! PUT/DELETE /v1/items ─► XADD <prefix>:items ─► every node: XREAD BLOCK ─► Applier
//!                                                  (overlay, then the shards held here)
//! ```
//!
//! One stream, not one per index shard: every node needs every item's vectors (its
//! ranker scores them, its pipeline drops deleted ones), not only its shards' items.

use crate::candidates::ann::AnnIndex;
use crate::data::Schema;
use crate::items::{ItemRow, Items};
use anyhow::Context;
use recd_runtime::metrics::Metrics;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Where this node's item writes go.
pub enum ItemWrites {
    /// A single node: its own item store, then its index shards (called directly).
    Local(Arc<crate::items::ItemStore>),
    /// A cluster on the shared store: the stream every node applies.
    Shared(ItemLog),
}

/// A stream entry id: (milliseconds, sequence).
pub type EntryId = (u64, u64);

/// Applies item changes to the overlay and to the index shards held here.
pub struct Applier {
    /// The live items.
    pub items: Arc<Items>,
    /// The index shards held here, with their shard numbers.
    pub indexes: Vec<(usize, Arc<dyn AnnIndex>)>,
    /// Index shards in the cluster (an item lives in `id % shards`).
    pub shards: usize,
}

impl Applier {
    /// Applies `changes` in order: the overlay first (a delete is dropped by every reader
    /// from then on; a rebuild that starts now reads the change), then the shards held
    /// here. Blocking.
    pub fn apply(&self, changes: &[Change]) -> anyhow::Result<()> {
        for (id, row) in changes {
            self.items.set(*id, row.clone());
        }
        for (shard, index) in &self.indexes {
            let mine: Vec<_> = (changes.iter())
                .filter(|(id, _)| (id % self.shards as u64) as usize == *shard)
                .cloned()
                .collect();
            if !mine.is_empty() {
                Arc::clone(index).apply_items(&mine)?;
            }
        }
        Ok(())
    }
}

/// The stream, and how far this node has applied it.
pub struct ItemLog {
    con: ConnectionManager,
    key: String,
    timeout: Duration,
    applied: watch::Receiver<EntryId>,
    tail: JoinHandle<()>,
}

type Entries = Vec<(String, Vec<Vec<u8>>)>;

/// Entries per page of the replay at start.
const REPLAY_PAGE: usize = 2000;

/// One item change: its id and row (`None`: a delete).
pub type Change = (u64, Option<Arc<ItemRow>>);

impl ItemLog {
    /// Connects (refusing a server that does not fsync every write, unless
    /// `require_fsync` is off), replays every change into `applier` (blocking work off
    /// the async workers), and starts the tail. An unreadable entry is skipped and
    /// counted, as the tail does.
    pub async fn open(
        url: &str,
        prefix: &str,
        (timeout, require_fsync): (Duration, bool),
        applier: Applier,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("features.store.redis.url")?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(timeout))
            .set_connection_timeout(Some(timeout))
            .set_number_of_retries(2);
        let mut con = (client.get_connection_manager_with_config(config).await)
            .context("connecting to the item log (redis)")?;
        let key = format!("{prefix}:items");
        let schema = applier.items.schema();
        if require_fsync {
            crate::features::store::redis::check_fsync(&mut con).await?;
        }
        // in pages: one reply per page stays within the timeout however long the log is
        let applier = Arc::new(applier);
        let (mut last, mut n) = ((0, 0), 0);
        loop {
            let entries: Entries = redis::cmd("XRANGE")
                .arg(&key)
                .arg(format!("({}-{}", last.0, last.1))
                .arg("+")
                .arg("COUNT")
                .arg(REPLAY_PAGE)
                .query_async(&mut con)
                .await
                .context("reading the item log")?;
            if entries.is_empty() {
                break;
            }
            let (at, changes) = parse(entries, schema, &metrics);
            (last, n) = (at.max(last), n + changes.len());
            let a = Arc::clone(&applier);
            tokio::task::spawn_blocking(move || a.apply(&changes)).await??;
        }
        tracing::info!(changes = n, "item log replayed");
        let (tx, applied) = watch::channel(last);
        let tail = tokio::spawn(tail(client, key.clone(), last, applier, tx, metrics));
        Ok(Self {
            con,
            key,
            timeout,
            applied,
            tail,
        })
    }

    /// Appends a change; durable when this returns. Its entry id.
    pub async fn append(&self, change: Change) -> anyhow::Result<EntryId> {
        let ids = self.append_many(&[change]).await?;
        ids.last().copied().context("XADD answered nothing")
    }

    /// Appends every change of `rows` in one pipelined round trip; durable when this
    /// returns. Their entry ids.
    pub async fn append_many(&self, rows: &[Change]) -> anyhow::Result<Vec<EntryId>> {
        let mut pipe = redis::pipe();
        for (id, row) in rows {
            let bytes = row.as_deref().map_or_else(Vec::new, crate::items::encode);
            let add = pipe.cmd("XADD").arg(&self.key).arg("*");
            add.arg("id").arg(*id).arg("row").arg(bytes);
        }
        let mut con = self.con.clone();
        // a large batch gets longer: 1 000 items answer in a few times one write
        let timeout = self.timeout.mul_f64(1.0 + rows.len() as f64 / 250.0);
        let entries = tokio::time::timeout(timeout, pipe.query_async::<Vec<String>>(&mut con))
            .await
            .context("the item log did not answer in time")??;
        (entries.iter())
            .map(|e| entry_id(e).with_context(|| format!("XADD answered {e:?}")))
            .collect()
    }

    /// Waits until this node has applied the log up to `entry`.
    pub async fn applied(&self, entry: EntryId, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.applied.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|&at| at >= entry)).await;
        match reached.map(|r| r.map(|_| ())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => anyhow::bail!("the item log's tail stopped"),
            Err(_) => anyhow::bail!("the change is durable but not applied here yet"),
        }
    }
}

impl Drop for ItemLog {
    fn drop(&mut self) {
        self.tail.abort();
    }
}

/// Follows the stream from `after`: each batch of new entries applied in order, off the
/// async workers; an unreadable entry is skipped, logged and counted (it was checked when
/// appended). Reconnects after a failure.
async fn tail(
    client: redis::Client,
    key: String,
    mut after: EntryId,
    applier: Arc<Applier>,
    applied: watch::Sender<EntryId>,
    metrics: Arc<Metrics>,
) {
    const BLOCK_MS: u64 = 1000;
    let schema = applier.items.schema();
    let mut con = None;
    loop {
        if con.is_none() {
            // its own connection: a blocking read would hold up a shared one
            let cfg = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_millis(BLOCK_MS + 2000)))
                .set_connection_timeout(Some(Duration::from_secs(2)));
            match client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
            {
                Ok(c) => con = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "item log unreachable, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let Some(c) = con.as_mut() else { continue };
        let read: redis::RedisResult<Option<Vec<(String, Entries)>>> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(512)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&key)
            .arg(format!("{}-{}", after.0, after.1))
            .query_async(c)
            .await;
        let entries = match read {
            Ok(Some(mut streams)) => streams.pop().map(|(_, e)| e).unwrap_or_default(),
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "reading the item log failed, reconnecting");
                con = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let written_ms: Vec<u64> = (entries.iter())
            .filter_map(|(e, _)| entry_id(e).map(|at| at.0))
            .collect();
        let (at, changes) = parse(entries, schema, &metrics);
        let a = Arc::clone(&applier);
        // a batch that did not apply is read again (not reported applied: the writer's
        // node answers 503 meanwhile); applying a change twice is harmless
        match tokio::task::spawn_blocking(move || a.apply(&changes)).await {
            Ok(Ok(())) => after = after.max(at),
            Ok(Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "applying item changes failed, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "applying item changes panicked, retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let now = recd_runtime::clock::unix_time().as_millis() as u64;
        for ms in written_ms {
            let secs = now.saturating_sub(ms) as f64 / 1000.0;
            metrics.write_visible_seconds.observe(secs);
        }
        let _ = applied.send(after);
    }
}

fn entry_id(s: &str) -> Option<EntryId> {
    let (ms, seq) = s.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The last entry id and the changes of `entries`; an unreadable entry (it was checked
/// when appended, so: another schema, or not written by recd) is skipped, logged and
/// counted in `recd_store_errors_total`.
fn parse(entries: Entries, schema: Schema, metrics: &Metrics) -> (EntryId, Vec<Change>) {
    let mut last = (0, 0);
    let mut out = Vec::with_capacity(entries.len());
    for (entry, fields) in entries {
        let Some(at) = entry_id(&entry) else {
            metrics.store_errors.inc();
            continue;
        };
        last = last.max(at);
        match change(&fields, schema) {
            Ok(c) => out.push(c),
            Err(e) => {
                metrics.store_errors.inc();
                tracing::warn!(entry, error = %format!("{e:#}"), "unreadable item log entry skipped");
            }
        }
    }
    (last, out)
}

/// One entry's change: fields `id` (decimal) and `row` (an item row, empty for a delete).
fn change(fields: &[Vec<u8>], schema: Schema) -> anyhow::Result<Change> {
    let (mut id, mut row) = (None, None);
    for pair in fields.chunks(2) {
        match pair {
            [k, v] if k.as_slice() == b"id" => {
                let text = std::str::from_utf8(v).context("id is not text")?;
                let n: u64 = text.parse().context("id is not a number")?;
                anyhow::ensure!(n <= crate::data::MAX_ITEM_ID, "id {n} is out of range");
                id = Some(n);
            }
            [k, v] if k.as_slice() == b"row" => {
                row = Some(match v.is_empty() {
                    true => None,
                    false => Some(Arc::new(crate::items::decode(v, schema)?)),
                });
            }
            _ => {}
        }
    }
    match (id, row) {
        (Some(id), Some(row)) => Ok((id, row)),
        _ => anyhow::bail!("an entry without id and row"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked() {
        let s = Schema::WORKLOAD;
        let row = ItemRow {
            emb: vec![0.125; 64],
            feats: vec![1.0; 16],
        };
        let good = vec![
            b"id".to_vec(),
            b"42".to_vec(),
            b"row".to_vec(),
            crate::items::encode(&row),
        ];
        assert_eq!(change(&good, s).unwrap().0, 42);
        let delete = vec![b"id".to_vec(), b"7".to_vec(), b"row".to_vec(), vec![]];
        assert_eq!(change(&delete, s).unwrap(), (7, None));
        let mut short = good.clone();
        short[3].truncate(10);
        assert!(change(&short, s).is_err());
        assert!(change(&good[..2], s).is_err());
        let mut huge = good;
        huge[1] = b"9007199254740993".to_vec();
        assert!(change(&huge, s).is_err());
        assert_eq!(entry_id("1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(entry_id("garbage"), None);
    }
}
