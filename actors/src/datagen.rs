//! `recd-node gen-data`: a seeded synthetic catalogue in the workload's file format.
//!
//! Same recipe as the workload (docs/workload.md) with recd's own RNG (splitmix64 +
//! Box–Muller): 1000 L2-normalised centres, He-initialised MLP weights, items drawn
//! around a uniformly chosen centre with σ = 0.1 noise and normalised, standard-normal
//! item features. Output is byte-identical for a seed.

use crate::data::{hex, Schema, H1, H2, N_CENTERS};
use crate::features::profile::SplitMix64;
use anyhow::Context;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const ITEM_NOISE: f64 = 0.1;
const CHUNK: usize = 50_000;

struct Normal {
    rng: SplitMix64,
    spare: Option<f64>,
}

impl Normal {
    fn next(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let u1 = loop {
            let u = self.rng.next_f64();
            if u > 0.0 {
                break u;
            }
        };
        let u2 = self.rng.next_f64();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = std::f64::consts::TAU * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

fn normalise(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
}

fn write_f32s(
    out: &mut impl Write,
    hasher: &mut Sha256,
    vals: impl Iterator<Item = f64>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    for v in vals {
        buf.extend_from_slice(&(v as f32).to_le_bytes());
    }
    hasher.update(&buf);
    out.write_all(&buf)
}

/// Writes `n_items` items and the rest of a workload-sized catalogue to `dir`, calling
/// `progress` with the number of items written so far.
pub fn generate(
    dir: &Path,
    n_items: usize,
    seed: u64,
    progress: impl FnMut(usize),
) -> anyhow::Result<()> {
    generate_with(dir, n_items, seed, Schema::WORKLOAD, progress)
}

/// [`generate`] for any sizes within [`Schema::check`]'s bounds.
pub fn generate_with(
    dir: &Path,
    n_items: usize,
    seed: u64,
    schema: Schema,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<()> {
    let Schema { dim, feat_dim } = schema.check()?;
    let mlp_in = schema.mlp_in();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut rng = Normal {
        rng: SplitMix64::new(seed),
        spare: None,
    };
    let mut sums = std::collections::BTreeMap::new();
    // per-process temporary names: nodes started together on an empty data folder each
    // generate the same bytes and rename them into place atomically
    let tmp = |name: &str| dir.join(format!("{name}.tmp.{}", std::process::id()));
    let create = |name: &str| -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
        let p = tmp(name);
        Ok(std::io::BufWriter::new(
            std::fs::File::create(&p).with_context(|| format!("creating {}", p.display()))?,
        ))
    };

    let mut centers = vec![0f64; N_CENTERS * dim];
    for c in centers.chunks_exact_mut(dim) {
        c.iter_mut().for_each(|x| *x = rng.next());
        normalise(c);
    }
    let mut h = Sha256::new();
    let mut f = create("centers.f32")?;
    write_f32s(&mut f, &mut h, centers.iter().copied())?;
    f.flush()?;
    sums.insert("centers.f32", hex(&h.finalize()));

    let mut h = Sha256::new();
    let mut f = create("mlp.f32")?;
    let layers = [
        (mlp_in * H1, (2.0 / mlp_in as f64).sqrt()),
        (H1, 0.01),
        (H1 * H2, (2.0 / H1 as f64).sqrt()),
        (H2, 0.01),
        (H2, (1.0 / H2 as f64).sqrt()),
    ];
    for (len, scale) in layers {
        let vals: Vec<f64> = (0..len).map(|_| rng.next() * scale).collect();
        write_f32s(&mut f, &mut h, vals.into_iter())?;
    }
    write_f32s(&mut f, &mut h, std::iter::once(0.0))?;
    f.flush()?;
    sums.insert("mlp.f32", hex(&h.finalize()));

    let (mut hi, mut hf) = (Sha256::new(), Sha256::new());
    let (mut fi, mut ff) = (create("items.f32")?, create("item_feats.f32")?);
    let mut row = vec![0f64; dim];
    let mut done = 0;
    while done < n_items {
        let m = CHUNK.min(n_items - done);
        let mut items = Vec::with_capacity(m * dim);
        let mut feats = Vec::with_capacity(m * feat_dim);
        for _ in 0..m {
            let c = (rng.rng.next_u64() % N_CENTERS as u64) as usize;
            for (j, x) in row.iter_mut().enumerate() {
                *x = centers[c * dim + j] + ITEM_NOISE * rng.next();
            }
            normalise(&mut row);
            items.extend_from_slice(&row);
            feats.extend((0..feat_dim).map(|_| rng.next()));
        }
        write_f32s(&mut fi, &mut hi, items.into_iter())?;
        write_f32s(&mut ff, &mut hf, feats.into_iter())?;
        done += m;
        progress(done);
    }
    fi.flush()?;
    ff.flush()?;
    sums.insert("items.f32", hex(&hi.finalize()));
    sums.insert("item_feats.f32", hex(&hf.finalize()));

    for name in crate::data::FILES {
        std::fs::rename(tmp(name), dir.join(name))?;
    }
    let meta = serde_json::json!({
        "n_items": n_items, "dim": dim, "feat_dim": feat_dim, "n_centers": N_CENTERS,
        "seed": seed, "item_noise_std": ITEM_NOISE, "user_noise_halfwidth": 0.15,
        "dtype": "float32-le", "layout": "row-major",
        "mlp_layout": [
            format!("W1[{mlp_in},{H1}]"), format!("b1[{H1}]"), format!("W2[{H1},{H2}]"),
            format!("b2[{H2}]"), format!("W3[{H2},1]"), "b3[1]".to_owned(),
        ],
        "generator": "recd-node gen-data",
        "sha256": sums,
    });
    // meta.json last, renamed like the others: its presence marks a complete catalogue,
    // so a node starting meanwhile never reads it half-written
    std::fs::write(tmp("meta.json"), serde_json::to_vec_pretty(&meta)?)?;
    std::fs::rename(tmp("meta.json"), dir.join("meta.json"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{dot, Catalogue};

    #[test]
    fn generated_catalogue_loads_and_is_deterministic() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut last = 0;
        generate(a.path(), 1234, 7, |n| last = n).unwrap();
        assert_eq!(last, 1234);
        generate(b.path(), 1234, 7, |_| {}).unwrap();
        for f in crate::data::FILES {
            assert_eq!(
                std::fs::read(a.path().join(f)).unwrap(),
                std::fs::read(b.path().join(f)).unwrap(),
                "{f}"
            );
        }
        let cat = Catalogue::load(a.path()).unwrap();
        assert_eq!(cat.len(), 1234);
        for i in [0, 617, 1233] {
            let norm = dot(cat.item(i), cat.item(i));
            assert!((norm - 1.0).abs() < 1e-4, "item {i} norm {norm}");
        }
    }

    #[test]
    fn corrupted_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), 100, 1, |_| {}).unwrap();
        let p = dir.path().join("item_feats.f32");
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[10] ^= 0xff;
        std::fs::write(&p, bytes).unwrap();
        let err = Catalogue::load(dir.path()).err().unwrap();
        assert!(format!("{err:#}").contains("sha256"), "{err:#}");
    }
}
