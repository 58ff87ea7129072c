//! One loaded model version: its input assembly (from `model.yaml`'s blocks), the
//! runtime that scores (native SGEMMs or tract), the warm-up that refuses a model
//! answering NaN, and the helpers every scorer shares (`top_k`, `split_rows`).

use super::config::{Block, Format, ModelConfig};
use super::native::Dense;
use super::onnx::OnnxModel;
use crate::data::{dot, Catalogue, Schema};
use crate::items::{Items, ItemsView};
use crate::types::Profile;
use anyhow::{ensure, Context};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Rows a warm-up scores (fewer when the catalogue is smaller).
const WARM_UP_ROWS: usize = 256;

/// The scoring runtime of a version.
#[derive(Debug)]
enum Runtime {
    Native(Dense),
    Onnx(Box<OnnxModel>),
}

/// A model version, ready to score.
#[derive(Debug)]
pub struct Model {
    /// `name@version`: what answers say ran and metrics carry.
    label: Arc<str>,
    version: u32,
    inputs: Vec<Block>,
    schema: Schema,
    width: usize,
    runtime: Runtime,
}

/// One request's share of a scoring call.
pub struct ScoreInput<'a> {
    /// The user's profile.
    pub profile: &'a Profile,
    /// Candidate item ids.
    pub candidates: &'a [u64],
}

impl Model {
    /// Loads version `version` of model `name` from its folder (`model.yaml` and the
    /// model file), for inputs of `schema`.
    pub fn load(dir: &Path, name: &str, version: u32, schema: Schema) -> anyhow::Result<Self> {
        let config = ModelConfig::load(dir)?;
        let width = config.width(schema)?;
        ensure!(
            config.fixed_rows.unwrap_or(1) * width <= 1 << 22,
            "fixed_rows × the input width is above 4 M floats per run"
        );
        let file = dir.join(config.file_name());
        let runtime = match config.format {
            Format::Onnx => {
                let output = config.output.as_deref();
                let onnx = OnnxModel::load(&file, width, output, config.fixed_rows)?;
                Runtime::Onnx(Box::new(onnx))
            }
            Format::Native => {
                let bytes =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                ensure!(bytes.len() % 4 == 0, "{} is not f32s", file.display());
                let flat: Vec<f32> = (bytes.chunks_exact(4))
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                return Self::native(name, version, &config, &flat, schema);
            }
        };
        Ok(Self::new(name, version, config, schema, width, runtime))
    }

    /// The catalogue's `mlp.f32` as version 0 of `name` (served until the repository
    /// has a version of that name).
    pub fn builtin(name: &str, catalogue: &Catalogue) -> anyhow::Result<Self> {
        let config = ModelConfig::workload_mlp();
        Self::native(name, 0, &config, &catalogue.mlp, catalogue.schema)
    }

    /// A native model from its floats (the catalogue's `mlp.f32` is one).
    pub fn native(
        name: &str,
        version: u32,
        config: &ModelConfig,
        flat: &[f32],
        schema: Schema,
    ) -> anyhow::Result<Self> {
        ensure!(config.format == Format::Native, "not a native model");
        let width = config.width(schema)?;
        ensure!(
            flat.iter().all(|v| v.is_finite()),
            "the weights hold a non-finite value"
        );
        let net = Dense::from_flat(flat, width, &config.hidden)?;
        let runtime = Runtime::Native(net);
        Ok(Self::new(
            name,
            version,
            config.clone(),
            schema,
            width,
            runtime,
        ))
    }

    fn new(
        name: &str,
        version: u32,
        config: ModelConfig,
        schema: Schema,
        width: usize,
        runtime: Runtime,
    ) -> Self {
        Self {
            label: format!("{name}@{version}").into(),
            version,
            inputs: config.inputs,
            schema,
            width,
            runtime,
        }
    }

    /// `name@version`.
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The version number.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Which runtime scores (`native`, `onnx`).
    pub fn format(&self) -> &'static str {
        match self.runtime {
            Runtime::Native(_) => "native",
            Runtime::Onnx(_) => "onnx",
        }
    }

    /// Scores every candidate of every input in one pass; one score list per input, in
    /// candidate order. A non-finite score fails the call (the pipeline answers in ANN
    /// order). The items' read guard is held while the input matrix is built, not
    /// through the forward pass (an item write waits for it).
    pub fn score_batch(
        &self,
        items: &Items,
        inputs: &[ScoreInput<'_>],
    ) -> anyhow::Result<Vec<Vec<f32>>> {
        let x = self.assemble(&items.view(), inputs);
        let rows = x.len() / self.width;
        let scores = self.forward(x, rows)?;
        ensure!(
            scores.iter().all(|s| s.is_finite()),
            "{} answered a non-finite score",
            self.label
        );
        Ok(split_rows(scores, inputs))
    }

    /// One score per row of `x` (rows × the input width).
    pub fn forward(&self, x: Vec<f32>, rows: usize) -> anyhow::Result<Vec<f32>> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        match &self.runtime {
            Runtime::Native(net) => Ok(net.forward(&x, rows)),
            Runtime::Onnx(m) => m.forward(x, rows),
        }
    }

    /// The input matrix (rows × width) of a scoring call, block by block as the config
    /// orders them. An item deleted since it was a candidate gets all-zero item parts
    /// (the pipeline drops it from the answer).
    pub fn assemble(&self, items: &ItemsView<'_>, inputs: &[ScoreInput<'_>]) -> Vec<f32> {
        let rows: usize = inputs.iter().map(|i| i.candidates.len()).sum();
        let mut x = vec![0f32; rows * self.width];
        let mut out = x.chunks_exact_mut(self.width);
        for input in inputs {
            let (emb, feats) = (&input.profile.emb[..], &input.profile.feats[..]);
            for (&id, row) in input.candidates.iter().zip(&mut out) {
                let item = items.get(id);
                let mut at = 0;
                for &block in &self.inputs {
                    let w = block.width(self.schema);
                    let dst = &mut row[at..at + w];
                    at += w;
                    match (block, item) {
                        (Block::UserEmb, _) => dst.copy_from_slice(emb),
                        (Block::UserFeats, _) => dst.copy_from_slice(feats),
                        (_, None) => {}
                        (Block::Cross, Some((v, _))) => {
                            for ((c, u), i) in dst.iter_mut().zip(emb).zip(v) {
                                *c = u * i;
                            }
                        }
                        (Block::ItemEmb, Some((v, _))) => dst.copy_from_slice(v),
                        (Block::ItemFeats, Some((_, f))) => dst.copy_from_slice(f),
                        (Block::Dot, Some((v, _))) => dst[0] = dot(emb, v),
                    }
                }
            }
        }
        x
    }

    /// Scores a sample of real items (each as its own user) before the version may
    /// serve: refuses a model that fails to run, answers the wrong number of scores or a
    /// non-finite one. Returns how long the pass took.
    pub fn warm_up(&self, items: &Items) -> anyhow::Result<Duration> {
        let base = items.base();
        let n = base.len().min(WARM_UP_ROWS);
        let ids: Vec<u64> = (0..n).map(|r| base.id(r)).collect();
        let profiles: Vec<Profile> = (0..n.min(4))
            .map(|r| Profile {
                emb: base.item(r).to_vec(),
                feats: base.item_feat(r).to_vec(),
                known: true,
                recent: Vec::new(),
            })
            .collect();
        let inputs: Vec<ScoreInput<'_>> = (profiles.iter())
            .map(|p| ScoreInput {
                profile: p,
                candidates: &ids,
            })
            .collect();
        let t = Instant::now();
        let scores = self
            .score_batch(items, &inputs)
            .context("warm-up scoring")?;
        ensure!(
            scores.iter().map(Vec::len).sum::<usize>() == n * profiles.len(),
            "warm-up answered the wrong number of scores"
        );
        Ok(t.elapsed())
    }
}

/// Splits one score vector back into per-input lists.
pub fn split_rows(scores: Vec<f32>, inputs: &[ScoreInput<'_>]) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(inputs.len());
    let mut offset = 0;
    for input in inputs {
        let n = input.candidates.len();
        out.push(scores[offset..offset + n].to_vec());
        offset += n;
    }
    out
}

/// Top `k` of (id, score) by score descending, ties by smaller id.
pub fn top_k(ids: &[u64], scores: &[f32], k: usize) -> Vec<(u64, f32)> {
    let mut pairs: Vec<(u64, f32)> = ids.iter().copied().zip(scores.iter().copied()).collect();
    let by = |a: &(u64, f32), b: &(u64, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if pairs.len() > k {
        pairs.select_nth_unstable_by(k, by);
        pairs.truncate(k);
    }
    pairs.sort_unstable_by(by);
    pairs
}

#[cfg(test)]
mod tests;
