//! `recd-node import users --from PATH`: bulk-loads user profiles into the configured
//! feature store (embedded: the shard files under `features.store.dir`, with no node
//! holding them; redis: the shared server, nodes may be serving).
//!
//! Formats: Parquet (what feature pipelines export: `user_id` string, `embedding`
//! list<float>, optional `features` list<float> and `recent_items` list<int64>), or raw
//! (a folder with `user_ids.txt` — one id per line — `users.f32`, N × dim little-endian
//! f32, and optionally `user_feats.f32`, N × feat_dim). Every row is checked like
//! `PUT /v1/users/{id}`; the import stops at the first bad row, naming it, with every row
//! before it durable. Rows go to their shards' stores in jobs of 1 000 upserts through
//! the same write path as the API (group commit), so a rerun is idempotent.

use crate::stores;
use anyhow::{bail, ensure, Context};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use recd_actors::data::{Catalogue, Schema};
use recd_actors::features::profile::ProfileSource;
use recd_actors::features::shard_of;
use recd_actors::features::store::{Done, ProfileStore};
use recd_actors::types::WriteOp;
use recd_runtime::config::Config;
use recd_runtime::metrics::Metrics;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Upserts per write job.
const JOB: usize = 1000;
/// Jobs in flight per shard.
const IN_FLIGHT: usize = 8;

/// One imported profile.
struct UserRow {
    id: String,
    emb: Vec<f32>,
    feats: Vec<f32>,
    recent: Vec<u64>,
}

/// Imports the users at `from` (Parquet file, or raw folder) into the store of `config`.
pub async fn users(config: &Config, from: &Path) -> anyhow::Result<()> {
    let catalogue =
        Arc::new(Catalogue::load(&config.node.data_dir).context("loading the catalogue")?);
    // the live items (the catalogue and the item store's changes): recent items must name one
    let metrics = Arc::new(Metrics::new());
    let (items, _) = stores::open_items(config, &catalogue, &[], &[], &metrics).await?;
    let source = ProfileSource::new(&catalogue);
    let shards = config.features.shards;
    let all: Vec<usize> = (0..shards).collect();
    let stores = stores::open(config, &items, source, &all, &metrics).await?;
    let rows: Box<dyn Iterator<Item = anyhow::Result<UserRow>> + Send> = if from.is_dir() {
        Box::new(raw_users(from, catalogue.schema)?)
    } else {
        Box::new(parquet_users(from, catalogue.schema)?)
    };
    let started = Instant::now();
    // room for every job that can be in flight: the limit, plus the final flush's one per shard
    let (done_tx, mut done_rx) = mpsc::channel::<Result<usize, String>>(shards * (IN_FLIGHT + 1));
    let mut pending: Vec<Vec<WriteOp>> = vec![Vec::new(); shards];
    let (mut sent, mut written, mut in_flight, mut last_report) =
        (0usize, 0usize, 0usize, Instant::now());
    let max_recent = config.features.store.recent_items;
    let mut refused = None;
    for (n, row) in rows.enumerate() {
        let row = match row.with_context(|| format!("row {n}")) {
            Ok(r) => r,
            Err(e) => {
                refused = Some(e);
                break;
            }
        };
        let op = WriteOp::Upsert {
            user: Arc::from(row.id.as_str()),
            emb: row.emb,
            feats: row.feats,
            recent: row.recent,
        };
        if let Err(e) = op.check(catalogue.schema, &|id| items.is_live(id), max_recent) {
            refused = Some(anyhow::anyhow!("row {n} (user {:?}): {e}", row.id));
            break;
        }
        let s = shard_of(&row.id, shards);
        pending[s].push(op);
        if pending[s].len() >= JOB {
            while in_flight >= shards * IN_FLIGHT {
                written += settle(&mut done_rx).await?;
                in_flight -= 1;
            }
            submit(&stores[s], std::mem::take(&mut pending[s]), &done_tx)?;
            (sent, in_flight) = (sent + JOB, in_flight + 1);
        }
        if last_report.elapsed().as_secs() >= 2 {
            last_report = Instant::now();
            let rate = written as f64 / started.elapsed().as_secs_f64();
            eprintln!(
                "import: {} rows read, {written} durable ({rate:.0} users/s)",
                n + 1
            );
        }
    }
    for (s, ops) in pending.into_iter().enumerate() {
        if !ops.is_empty() {
            sent += ops.len();
            submit(&stores[s], ops, &done_tx)?;
            in_flight += 1;
        }
    }
    while in_flight > 0 {
        written += settle(&mut done_rx).await?;
        in_flight -= 1;
    }
    ensure!(written == sent, "{sent} rows sent but {written} written");
    finish("users", written, started, refused)
}

/// The end of an import of `what`: the refused row's error (with what is durable), or
/// the count and rate on the terminal.
pub(crate) fn finish(
    what: &str,
    written: usize,
    started: Instant,
    refused: Option<anyhow::Error>,
) -> anyhow::Result<()> {
    if let Some(e) = refused {
        return Err(e.context(format!(
            "import stopped; the {written} {what} before it are durable"
        )));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "import: {written} {what} in {secs:.1} s ({:.0} {what}/s)",
        written as f64 / secs
    );
    Ok(())
}

fn submit(
    store: &Arc<dyn ProfileStore>,
    ops: Vec<WriteOp>,
    done: &mpsc::Sender<Result<usize, String>>,
) -> anyhow::Result<()> {
    let (n, tx) = (ops.len(), done.clone());
    let done: Done = Box::new(move |r| {
        // never full: at most its capacity of jobs is in flight
        let _ = tx.try_send(r.map(|_| n).map_err(|e| e.message));
    });
    store
        .write(ops, done)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

async fn settle(rx: &mut mpsc::Receiver<Result<usize, String>>) -> anyhow::Result<usize> {
    match rx.recv().await {
        Some(Ok(n)) => Ok(n),
        Some(Err(e)) => bail!("a write job failed: {e}"),
        None => bail!("the store stopped"),
    }
}

/// Rows of a raw folder: `user_ids.txt`, `users.f32`, optional `user_feats.f32`.
fn raw_users(
    dir: &Path,
    schema: Schema,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<UserRow>> + Send> {
    let open = |name: &str| {
        std::fs::File::open(dir.join(name))
            .with_context(|| format!("opening {}", dir.join(name).display()))
    };
    let ids = std::io::BufReader::new(open("user_ids.txt")?).lines();
    let mut embs = std::io::BufReader::new(open("users.f32")?);
    let mut feats = match dir.join("user_feats.f32").is_file() {
        true => Some(std::io::BufReader::new(open("user_feats.f32")?)),
        false => None,
    };
    let floats = |r: &mut dyn Read, n: usize| -> anyhow::Result<Vec<f32>> {
        let mut b = vec![0u8; 4 * n];
        r.read_exact(&mut b)
            .context("users.f32 / user_feats.f32 end before user_ids.txt")?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    Ok(ids.map(move |id| {
        let id = id.context("reading user_ids.txt")?;
        let emb = floats(&mut embs, schema.dim)?;
        let feats = match &mut feats {
            Some(f) => floats(f, schema.feat_dim)?,
            None => vec![0.0; schema.feat_dim],
        };
        Ok(UserRow {
            id,
            emb,
            feats,
            recent: Vec::new(),
        })
    }))
}

/// Rows of a Parquet file.
fn parquet_users(
    path: &Path,
    schema: Schema,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<UserRow>> + Send> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let names: Vec<String> = (reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields())
    .iter()
    .map(|f| f.name().to_owned())
    .collect();
    for need in ["user_id", "embedding"] {
        ensure!(
            names.iter().any(|n| n == need),
            "{}: no column {need:?} (has {names:?})",
            path.display()
        );
    }
    Ok(reader.into_iter().map(move |row| {
        let row = row.context("reading a Parquet row")?;
        let mut out = UserRow {
            id: String::new(),
            emb: Vec::new(),
            feats: vec![0.0; schema.feat_dim],
            recent: Vec::new(),
        };
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("user_id", Field::Str(s)) => out.id = s.clone(),
                ("user_id", other) => bail!("user_id must be a string, not {other}"),
                ("embedding", f) => out.emb = floats_of(f).context("embedding")?,
                ("features", Field::Null) | ("recent_items", Field::Null) => {}
                ("features", f) => out.feats = floats_of(f).context("features")?,
                ("recent_items", f) => out.recent = ids_of(f).context("recent_items")?,
                _ => {}
            }
        }
        Ok(out)
    }))
}

pub(crate) fn floats_of(f: &Field) -> anyhow::Result<Vec<f32>> {
    let Field::ListInternal(list) = f else {
        bail!("expected a list of floats, got {f}");
    };
    (list.elements().iter())
        .map(|e| match e {
            Field::Float(x) => Ok(*x),
            Field::Double(x) => Ok(*x as f32),
            other => bail!("expected a float, got {other}"),
        })
        .collect()
}

fn ids_of(f: &Field) -> anyhow::Result<Vec<u64>> {
    let Field::ListInternal(list) = f else {
        bail!("expected a list of item ids, got {f}");
    };
    (list.elements().iter())
        .map(|e| match e {
            Field::Long(x) if *x >= 0 => Ok(*x as u64),
            Field::ULong(x) => Ok(*x),
            Field::Int(x) if *x >= 0 => Ok(*x as u64),
            other => bail!("expected an item id, got {other}"),
        })
        .collect()
}
