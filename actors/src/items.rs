//! The live item catalogue: the catalogue loaded at start plus what `PUT|DELETE
//! /v1/items/{id}` changed since, durable in the node's item store (`items.redb`).
//!
//! ```text
//! ingress writes ──► ItemStore (redb, fsync) ──► Items overlay ──► Call::Items to the owning index shard
//! readers: pipeline (drops deleted candidates, before ranking and before answering),
//!          ranker (item vectors), feature shards (events move toward an item's vector)
//! ```
//!
//! Readers take one read guard per batch ([`Items::view`]); with no overlay (the usual
//! case) a lookup is the catalogue's own slice.

use crate::data::{Catalogue, Schema};
use anyhow::ensure;
use redb::{Database, ReadableTable, TableDefinition};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};

const ITEMS: TableDefinition<u64, &[u8]> = TableDefinition::new("items");

pub use crate::data::MAX_ITEM_ID;

/// An item written through the API.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    /// L2-normalised embedding (`schema.dim` floats).
    pub emb: Vec<f32>,
    /// Dense features (`schema.feat_dim` floats).
    pub feats: Vec<f32>,
}

impl ItemRow {
    /// A row of `schema`'s sizes with finite values, its embedding normalised; why not.
    pub fn checked(emb: Vec<f32>, feats: Vec<f32>, schema: Schema) -> Result<Self, String> {
        let Schema { dim, feat_dim } = schema;
        if emb.len() != dim {
            return Err(format!(
                "embedding must have {dim} floats (got {})",
                emb.len()
            ));
        }
        if feats.len() != feat_dim {
            let got = feats.len();
            return Err(format!("features must have {feat_dim} floats (got {got})"));
        }
        let mut r = ItemRow { emb, feats };
        if !r.emb.iter().chain(&r.feats).all(|x| x.is_finite()) {
            return Err("embedding and features must be finite".into());
        }
        if !crate::data::normalise(&mut r.emb) {
            return Err("embedding must not be all zeros".into());
        }
        Ok(r)
    }
}

/// The catalogue and its changes.
pub struct Items {
    base: Arc<Catalogue>,
    /// `None`: deleted.
    overlay: RwLock<HashMap<u64, Option<Arc<ItemRow>>>>,
}

/// A read view for one batch.
pub struct ItemsView<'a> {
    base: &'a Catalogue,
    overlay: RwLockReadGuard<'a, HashMap<u64, Option<Arc<ItemRow>>>>,
}

impl ItemsView<'_> {
    /// Embedding and features of a live item.
    pub fn get(&self, id: u64) -> Option<(&[f32], &[f32])> {
        if !self.overlay.is_empty() {
            if let Some(entry) = self.overlay.get(&id) {
                return entry.as_deref().map(|r| (&r.emb[..], &r.feats[..]));
            }
        }
        (self.base.row(id)).map(|r| (self.base.item(r), self.base.item_feat(r)))
    }

    /// True while no item has been written since start: nothing has stopped being live.
    pub fn unchanged(&self) -> bool {
        self.overlay.is_empty()
    }

    /// Whether `id` is a live item.
    pub fn is_live(&self, id: u64) -> bool {
        self.get(id).is_some()
    }
}

impl Items {
    /// The catalogue with no changes.
    pub fn new(base: Arc<Catalogue>) -> Self {
        Self {
            base,
            overlay: RwLock::new(HashMap::new()),
        }
    }

    /// The catalogue's sizes (every written item has them).
    pub fn schema(&self) -> Schema {
        self.base.schema
    }

    /// A read view (hold it for one batch, not across awaits).
    pub fn view(&self) -> ItemsView<'_> {
        ItemsView {
            base: &self.base,
            overlay: self.overlay.read().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Whether `id` is a live item now.
    pub fn is_live(&self, id: u64) -> bool {
        self.view().is_live(id)
    }

    /// Whether `id` was deleted through the API.
    pub fn was_deleted(&self, id: u64) -> bool {
        matches!(self.view().overlay.get(&id), Some(None))
    }

    /// Records an upsert (`Some`) or a delete (`None`) of `id`.
    pub fn set(&self, id: u64, row: Option<Arc<ItemRow>>) {
        let mut o = self.overlay.write().unwrap_or_else(|p| p.into_inner());
        o.insert(id, row);
    }

    /// The catalogue, and the changes of the items of index shard `shard` of `shards`
    /// (what a rebuild of that shard reads; the read guard is not kept).
    pub fn shard_snapshot(
        &self,
        shard: usize,
        shards: usize,
    ) -> (Arc<Catalogue>, HashMap<u64, Option<Arc<ItemRow>>>) {
        let o = self.view().overlay;
        let mine = (o.iter())
            .filter(|(id, _)| *id % shards as u64 == shard as u64)
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        (Arc::clone(&self.base), mine)
    }

    /// Items changed since the catalogue was loaded, and how many of them are deletes.
    pub fn changes(&self) -> (usize, usize) {
        let o = self.view().overlay;
        (o.len(), o.values().filter(|r| r.is_none()).count())
    }

    /// The catalogue loaded at start.
    pub fn base(&self) -> &Arc<Catalogue> {
        &self.base
    }
}

/// The node's durable item changes: one redb file, written by the ingress (a few writes
/// a second at most; each its own fsync'd commit, off the async workers).
pub struct ItemStore {
    db: Database,
}

impl ItemStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = crate::redb_file::open(path)?;
        let txn = db.begin_write()?;
        txn.open_table(ITEMS)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Makes `row` (or the delete of `id`) durable. Blocking.
    pub fn put(&self, id: u64, row: Option<&ItemRow>) -> anyhow::Result<()> {
        self.put_many(&[(id, row.cloned().map(Arc::new))])
    }

    /// Makes every change of `rows` durable in one commit. Blocking.
    pub fn put_many(&self, rows: &[(u64, Option<Arc<ItemRow>>)]) -> anyhow::Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(ITEMS)?;
            for (id, row) in rows {
                let bytes = row.as_deref().map_or_else(Vec::new, encode);
                table.insert(*id, bytes.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Every change, in id order, checked against `schema` (a store written for other
    /// sizes is an error). Blocking.
    pub fn all(&self, schema: Schema) -> anyhow::Result<Vec<(u64, Option<ItemRow>)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ITEMS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            let bytes = v.value();
            let row = (!bytes.is_empty())
                .then(|| decode(bytes, schema))
                .transpose()?;
            out.push((k.value(), row));
        }
        Ok(out)
    }
}

pub(crate) fn encode(row: &ItemRow) -> Vec<u8> {
    row.emb
        .iter()
        .chain(&row.feats)
        .flat_map(|x| x.to_le_bytes())
        .collect()
}

pub(crate) fn decode(bytes: &[u8], schema: Schema) -> anyhow::Result<ItemRow> {
    ensure!(
        bytes.len() == 4 * (schema.dim + schema.feat_dim),
        "stored item of {} bytes, not {}-d with {} features",
        bytes.len(),
        schema.dim,
        schema.feat_dim
    );
    let mut floats = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    let mut row = ItemRow {
        emb: vec![0.0; schema.dim],
        feats: vec![0.0; schema.feat_dim],
    };
    for x in row.emb.iter_mut().chain(row.feats.iter_mut()) {
        *x = floats.next().unwrap_or(f32::NAN);
        ensure!(x.is_finite(), "stored item holds a non-finite value");
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_overlay_the_catalogue_and_survive_a_reopen() {
        let (_d, cat) = crate::test_data::catalogue(100);
        let items = Items::new(Arc::new(cat));
        assert!(items.is_live(99) && !items.is_live(100));
        let row = ItemRow {
            emb: vec![0.125; 64],
            feats: vec![1.0; 16],
        };
        items.set(5000, Some(Arc::new(row.clone())));
        items.set(7, None);
        let v = items.view();
        assert_eq!(v.get(5000).unwrap().0, &row.emb[..]);
        assert!(!v.is_live(7) && v.is_live(8));
        drop(v);
        assert_eq!(items.changes(), (2, 1));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("items.redb");
        {
            let store = ItemStore::open(&path).unwrap();
            store.put(5000, Some(&row)).unwrap();
            store.put(7, None).unwrap();
        }
        let all = ItemStore::open(&path)
            .unwrap()
            .all(Schema::WORKLOAD)
            .unwrap();
        assert!(ItemStore::open(&path)
            .unwrap()
            .all(Schema {
                dim: 32,
                feat_dim: 16
            })
            .is_err());
        assert_eq!(all, vec![(7, None), (5000, Some(row))]);
    }
}
