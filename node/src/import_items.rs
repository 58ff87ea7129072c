//! `recd-node import items --from PATH`: bulk-loads items (new ids or replacements of
//! catalogue items) into the configured item writes — the embedded item store of a
//! single node (no node may hold it; the node applies the items to its index shards
//! when it starts) or the redis backend's item log (nodes may be serving: they apply
//! the items as they tail it).
//!
//! Formats: Parquet (`item_id` uint64/int64, `embedding` list<float>, optional
//! `features` list<float>) or raw (a folder with `item_ids.u64`, N little-endian u64,
//! `items.f32`, N × dim f32, and optionally `item_feats.f32`, N × feat_dim). Every row
//! is checked like `PUT /v1/items/{id}`; the import stops at the first bad row, naming
//! it, with every batch before it durable. Rewriting an item is idempotent.

use crate::import::floats_of;
use crate::stores;
use anyhow::{bail, ensure, Context};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use recd_actors::data::{Catalogue, Schema, MAX_ITEM_ID};
use recd_actors::item_log::{Change, ItemWrites};
use recd_actors::items::ItemRow;
use recd_runtime::config::Config;
use recd_runtime::metrics::Metrics;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Items per durable batch.
const BATCH: usize = 1000;

type Row = (u64, Vec<f32>, Option<Vec<f32>>);

/// Imports the items at `from` (Parquet file, or raw folder) into the item writes of
/// `config`.
pub async fn items(config: &Config, from: &Path) -> anyhow::Result<()> {
    let catalogue =
        Arc::new(Catalogue::load(&config.node.data_dir).context("loading the catalogue")?);
    let schema = catalogue.schema;
    let metrics = Arc::new(Metrics::new());
    let (_, writes) = stores::open_items(config, &catalogue, &[], &[], &metrics).await?;
    let Some(writes) = writes else {
        bail!("item writes need the embedded store on a single node, or the redis backend");
    };
    let rows: Box<dyn Iterator<Item = anyhow::Result<Row>>> = match from.is_dir() {
        true => Box::new(raw(from, schema)?),
        false => Box::new(parquet(from)?),
    };
    let started = Instant::now();
    let (mut batch, mut written, mut last_report) = (Vec::with_capacity(BATCH), 0, started);
    let mut refused = None;
    for (n, row) in rows.enumerate() {
        let checked = row.and_then(|(id, emb, feats)| {
            ensure!(id <= MAX_ITEM_ID, "item_id {id} is above {MAX_ITEM_ID}");
            let feats = feats.unwrap_or_else(|| vec![0.0; schema.feat_dim]);
            let r = ItemRow::checked(emb, feats, schema).map_err(|e| anyhow::anyhow!(e))?;
            Ok((id, Some(Arc::new(r))))
        });
        match checked {
            Ok(change) => batch.push(change),
            Err(e) => {
                refused = Some(e.context(format!("row {n}")));
                break;
            }
        }
        if batch.len() == BATCH {
            written += put(&writes, std::mem::take(&mut batch)).await?;
        }
        if last_report.elapsed().as_secs() >= 2 {
            last_report = Instant::now();
            let rate = written as f64 / started.elapsed().as_secs_f64();
            eprintln!("import: {written} items durable ({rate:.0} items/s)");
        }
    }
    written += put(&writes, batch).await?;
    crate::import::finish("items", written, started, refused)
}

/// Makes `batch` durable; its length.
async fn put(writes: &ItemWrites, batch: Vec<Change>) -> anyhow::Result<usize> {
    let n = batch.len();
    if n == 0 {
        return Ok(0);
    }
    match writes {
        ItemWrites::Local(store) => {
            let store = Arc::clone(store);
            tokio::task::spawn_blocking(move || store.put_many(&batch)).await??;
        }
        ItemWrites::Shared(log) => {
            log.append_many(&batch).await?;
        }
    }
    Ok(n)
}

/// Rows of a raw folder: `item_ids.u64`, `items.f32`, optional `item_feats.f32`.
fn raw(dir: &Path, schema: Schema) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Row>>> {
    let read = |name: &str| {
        std::fs::read(dir.join(name))
            .with_context(|| format!("reading {}", dir.join(name).display()))
    };
    let ids = read("item_ids.u64")?;
    ensure!(
        ids.len() % 8 == 0,
        "item_ids.u64 is not a whole number of u64s"
    );
    let n = ids.len() / 8;
    let embs = read("items.f32")?;
    ensure!(
        embs.len() == n * schema.dim * 4,
        "items.f32 holds {} bytes, {n} items of {} floats need {}",
        embs.len(),
        schema.dim,
        n * schema.dim * 4
    );
    let feats = match dir.join("item_feats.f32").is_file() {
        true => {
            let f = read("item_feats.f32")?;
            ensure!(
                f.len() == n * schema.feat_dim * 4,
                "item_feats.f32 holds {} bytes, {n} items need {}",
                f.len(),
                n * schema.feat_dim * 4
            );
            Some(f)
        }
        false => None,
    };
    let floats = |b: &[u8]| -> Vec<f32> {
        (b.chunks_exact(4))
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    Ok((0..n).map(move |i| {
        let id = u64::from_le_bytes(ids[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (d, f) = (schema.dim * 4, schema.feat_dim * 4);
        let emb = floats(&embs[i * d..(i + 1) * d]);
        let feats = feats.as_ref().map(|b| floats(&b[i * f..(i + 1) * f]));
        Ok((id, emb, feats))
    }))
}

/// Rows of a Parquet file.
fn parquet(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Row>>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let reader = SerializedFileReader::new(file)
        .with_context(|| format!("{} is not a Parquet file", path.display()))?;
    let fields = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .to_vec();
    for need in ["item_id", "embedding"] {
        ensure!(
            fields.iter().any(|f| f.name() == need),
            "{}: no column {need:?}",
            path.display()
        );
    }
    Ok(reader.into_iter().map(|row| {
        let row = row.context("reading a Parquet row")?;
        let (mut id, mut emb, mut feats) = (None, None, None);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                ("item_id", Field::ULong(x)) => id = Some(*x),
                ("item_id", Field::Long(x)) if *x >= 0 => id = Some(*x as u64),
                ("item_id", other) => bail!("item_id must be a non-negative integer, not {other}"),
                ("embedding", f) => emb = Some(floats_of(f).context("embedding")?),
                ("features", Field::Null) => {}
                ("features", f) => feats = Some(floats_of(f).context("features")?),
                _ => {}
            }
        }
        match (id, emb) {
            (Some(id), Some(emb)) => Ok((id, emb, feats)),
            _ => bail!("a row without item_id or embedding"),
        }
    }))
}
