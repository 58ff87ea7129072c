//! The catalogue on disk (docs/workload.md): item embeddings and features, mixture
//! centres and the MLP weights as little-endian f32 files, described by `meta.json`.
//!
//! The format is the contract: files written by `recd-node gen-data` and by the
//! workload's `gen_data.py` load the same way. The sizes — embedding dimensions and
//! feature counts, the [`Schema`] every stage checks its inputs against — come from
//! `meta.json` (within [`Schema::check`]'s bounds); each file's length is checked
//! against them and its sha256 verified, so a truncated or swapped file is an error at
//! start, not wrong answers later.

use anyhow::{bail, ensure, Context};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Mixture centres users derive from when `meta.json` does not say.
pub const N_CENTERS: usize = 1000;
/// First hidden layer width of the native MLP format.
pub const H1: usize = 128;
/// Second hidden layer width of the native MLP format.
pub const H2: usize = 64;

/// The catalogue files of a data folder (`centers.f32` is optional: without it there
/// are no derived demo users).
pub const FILES: [&str; 4] = ["items.f32", "item_feats.f32", "centers.f32", "mlp.f32"];

/// The shape of the data: what every profile, item, query and ranker input is sized by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schema {
    /// Embedding dimensions of users and items.
    pub dim: usize,
    /// Dense features per user and per item.
    pub feat_dim: usize,
}

impl Schema {
    /// The reference workload's sizes (docs/workload.md): 64-d, 16 features.
    pub const WORKLOAD: Schema = Schema {
        dim: 64,
        feat_dim: 16,
    };
    /// Largest embedding accepted.
    pub const MAX_DIM: usize = 4096;
    /// Most dense features accepted.
    pub const MAX_FEAT_DIM: usize = 1024;

    /// Why these sizes are refused, if they are: 2..=4096 dimensions, 0..=1024 features.
    pub fn check(self) -> anyhow::Result<Self> {
        ensure!(
            (2..=Self::MAX_DIM).contains(&self.dim),
            "dim {} is outside 2..={}",
            self.dim,
            Self::MAX_DIM
        );
        ensure!(
            self.feat_dim <= Self::MAX_FEAT_DIM,
            "feat_dim {} is above {}",
            self.feat_dim,
            Self::MAX_FEAT_DIM
        );
        Ok(self)
    }

    /// Ranker input width: user⊙item (dim) + user features + item features.
    pub fn mlp_in(self) -> usize {
        self.dim + 2 * self.feat_dim
    }

    /// Floats in `mlp.f32` for this schema.
    pub fn mlp_len(self) -> usize {
        self.mlp_in() * H1 + H1 + H1 * H2 + H2 + H2 + 1
    }
}

/// The optional file of stable item ids: N little-endian u64, row order (row numbers
/// when absent).
pub const IDS_FILE: &str = "item_ids.u64";

/// Largest item id (ids stay exact as JSON numbers).
pub const MAX_ITEM_ID: u64 = (1 << 53) - 1;

/// `meta.json`: only what recd needs is read; other keys are allowed.
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    /// Number of items (rows of items.f32).
    pub n_items: usize,
    /// Embedding dimensions (2..=4096).
    pub dim: usize,
    /// Feature dimensions (0..=1024).
    pub feat_dim: usize,
    /// Rows of `centers.f32` (1000 when absent).
    #[serde(default = "default_centers")]
    pub n_centers: usize,
    /// sha256 of each file, hex.
    pub sha256: BTreeMap<String, String>,
}

fn default_centers() -> usize {
    N_CENTERS
}

/// Item ids by row, and rows by id.
type Ids = (Vec<u64>, HashMap<u64, u32>);

/// Items, centres and model weights in memory.
pub struct Catalogue {
    /// Parsed `meta.json`.
    pub meta: Meta,
    /// Its sizes, checked.
    pub schema: Schema,
    /// N × dim, row-major, L2-normalised.
    pub items: Vec<f32>,
    /// N × feat_dim, row-major.
    pub item_feats: Vec<f32>,
    /// n_centers × dim mixture centres (empty without `centers.f32`).
    pub centers: Vec<f32>,
    /// The MLP weights in file order.
    pub mlp: Vec<f32>,
    /// Stable item ids by row (`item_ids.u64`), and rows by id; `None`: ids are rows.
    ids: Option<Ids>,
}

impl Catalogue {
    /// True if `dir` holds a catalogue (has `meta.json`).
    pub fn exists(dir: &Path) -> bool {
        dir.join("meta.json").is_file()
    }

    /// Loads and verifies the catalogue in `dir`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let meta_path = dir.join("meta.json");
        let meta: Meta = serde_json::from_slice(
            &std::fs::read(&meta_path)
                .with_context(|| format!("reading {}", meta_path.display()))?,
        )
        .with_context(|| format!("parsing {}", meta_path.display()))?;
        let schema = Schema {
            dim: meta.dim,
            feat_dim: meta.feat_dim,
        }
        .check()
        .context("meta.json")?;
        ensure!(meta.n_items > 0, "meta.json: n_items is 0");
        ensure!(
            (1..=1_000_000).contains(&meta.n_centers),
            "meta.json: n_centers {} is outside 1..=1000000",
            meta.n_centers
        );
        let read = |name: &str, expect: usize| -> anyhow::Result<Vec<f32>> {
            let bytes = checked_file(dir, name, &meta, expect, "f32")?;
            Ok(bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect())
        };
        let (n, dim) = (meta.n_items, schema.dim);
        let items = read("items.f32", n * dim)?;
        let item_feats = read("item_feats.f32", n * schema.feat_dim)?;
        // optional, unless meta.json lists it (then a missing file is a missing file)
        let listed = meta.sha256.contains_key("centers.f32");
        let centers = match listed || dir.join("centers.f32").is_file() {
            true => read("centers.f32", meta.n_centers * dim)?,
            false => Vec::new(),
        };
        let mlp = read("mlp.f32", schema.mlp_len())?;
        if (items.iter().chain(&item_feats).chain(&centers).chain(&mlp)).any(|v| !v.is_finite()) {
            bail!("catalogue holds a non-finite value");
        }
        let ids = read_ids(dir, n, &meta)?;
        Ok(Self {
            meta,
            schema,
            items,
            item_feats,
            centers,
            mlp,
            ids,
        })
    }

    /// The stable id of row `row`.
    pub fn id(&self, row: usize) -> u64 {
        self.ids.as_ref().map_or(row as u64, |(ids, _)| ids[row])
    }

    /// The row of item `id`, if the catalogue holds it.
    pub fn row(&self, id: u64) -> Option<usize> {
        match &self.ids {
            Some((_, rows)) => rows.get(&id).map(|&r| r as usize),
            None => ((id as usize) < self.meta.n_items).then_some(id as usize),
        }
    }

    /// One past the largest id (what a peer's item ids are checked against).
    pub fn id_bound(&self) -> usize {
        self.ids.as_ref().map_or(self.meta.n_items, |(ids, _)| {
            ids.iter().max().map_or(0, |&m| m as usize + 1)
        })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.meta.n_items
    }

    /// True for an empty catalogue (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.meta.n_items == 0
    }

    /// Embedding of the item in row `row`.
    pub fn item(&self, row: usize) -> &[f32] {
        let d = self.schema.dim;
        &self.items[row * d..(row + 1) * d]
    }

    /// Dense features of the item in row `row`.
    pub fn item_feat(&self, row: usize) -> &[f32] {
        let f = self.schema.feat_dim;
        &self.item_feats[row * f..(row + 1) * f]
    }

    /// A short fingerprint of the item vectors and ids (for snapshot validity).
    pub fn fingerprint(&self) -> String {
        let items: String = self.meta.sha256.get("items.f32").map_or_else(
            || format!("n{}", self.meta.n_items),
            |s| s.chars().take(16).collect(),
        );
        match &self.ids {
            None => items,
            Some((ids, _)) => {
                let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_le_bytes()).collect();
                format!("{items}-ids{}", &hex(&Sha256::digest(&bytes))[..8])
            }
        }
    }
}

/// The bytes of `dir/name`: its sha256 as `meta.json` lists it (when it does), and
/// exactly `count` values of `kind` (f32 or u64).
fn checked_file(
    dir: &Path,
    name: &str,
    meta: &Meta,
    count: usize,
    kind: &str,
) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(want) = meta.sha256.get(name) {
        let got = hex(&Sha256::digest(&bytes));
        ensure!(
            &got == want,
            "{name}: sha256 {got} does not match meta.json {want}"
        );
    }
    let width = if kind == "u64" { 8 } else { 4 };
    ensure!(
        bytes.len() == count * width,
        "{name}: {} bytes, expected {} ({count} {kind})",
        bytes.len(),
        count * width
    );
    Ok(bytes)
}

/// The ids of `item_ids.u64` in `dir`, checked (count, sha256 when listed, range,
/// uniqueness); `None` when there is no such file.
fn read_ids(dir: &Path, n: usize, meta: &Meta) -> anyhow::Result<Option<Ids>> {
    let path = dir.join(IDS_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = checked_file(dir, IDS_FILE, meta, n, "u64")?;
    let ids: Vec<u64> = (bytes.chunks_exact(8))
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let mut rows = HashMap::with_capacity(n);
    for (row, &id) in ids.iter().enumerate() {
        ensure!(
            id <= MAX_ITEM_ID,
            "{IDS_FILE}: row {row} has id {id}, above {MAX_ITEM_ID}"
        );
        ensure!(
            rows.insert(id, row as u32).is_none(),
            "{IDS_FILE}: id {id} appears twice"
        );
    }
    Ok(Some((ids, rows)))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inner product of two equal-length slices.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales `v` to unit length; false (and `v` unchanged in meaning) when it cannot be.
pub fn normalise(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm < 1e-6 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}
