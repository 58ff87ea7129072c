//! `model.yaml`, the config of one model version in the repository: its format, its
//! file, the blocks its input row is assembled from (in order) and, for ONNX, which
//! output is the score.
//!
//! ```yaml
//! format: onnx                 # or native (little-endian f32 dense layers)
//! file: model.onnx             # default model.onnx / weights.f32
//! inputs: [cross, user_feats, item_feats]
//! output: score                # ONNX output name (default: the first output)
//! hidden: [128, 64]            # native only: hidden layer widths
//! fixed_rows: 256              # ONNX only: plan for this many rows, pad each call
//! ```
//!
//! `fixed_rows` serves graphs whose runtime kernels need a static batch (tract 0.21's
//! integer matmul does): the plan is optimised for `[fixed_rows, width]` and a call's
//! rows run in chunks of it, the last padded with zeros.
//!
//! Blocks: `cross` (user ⊙ item embedding, `dim`), `user_emb`, `item_emb` (`dim`),
//! `user_feats`, `item_feats` (`feat_dim`), `dot` (⟨user, item⟩, 1). The row width is
//! the sum, for the data's schema.

use crate::data::Schema;
use anyhow::{ensure, Context};
use serde::Deserialize;
use std::path::Path;

/// Widest input row a model may take.
pub const MAX_INPUT_WIDTH: usize = 16_384;
/// Widest hidden layer of a native model, and most hidden layers.
pub const MAX_HIDDEN: (usize, usize) = (8192, 16);

/// How the model file is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// An ONNX graph run by tract.
    Onnx,
    /// recd's dense format: per hidden layer W (in × out) then b, then the output
    /// layer's W (last × 1) and b, as little-endian f32, run as SGEMMs.
    Native,
}

/// One block of an input row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// User embedding ⊙ item embedding.
    Cross,
    /// The user embedding.
    UserEmb,
    /// The item embedding.
    ItemEmb,
    /// The user's dense features.
    UserFeats,
    /// The item's dense features.
    ItemFeats,
    /// The inner product of user and item embeddings.
    Dot,
}

impl Block {
    /// Floats this block takes for `schema`.
    pub fn width(self, schema: Schema) -> usize {
        match self {
            Block::Cross | Block::UserEmb | Block::ItemEmb => schema.dim,
            Block::UserFeats | Block::ItemFeats => schema.feat_dim,
            Block::Dot => 1,
        }
    }
}

/// A parsed, checked `model.yaml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// How the file is run.
    pub format: Format,
    /// The model file, in the version's folder.
    #[serde(default)]
    pub file: Option<String>,
    /// The input row's blocks, in order.
    pub inputs: Vec<Block>,
    /// ONNX: the output holding the score.
    #[serde(default)]
    pub output: Option<String>,
    /// Native: hidden layer widths.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// ONNX: optimise for this many rows and run calls in padded chunks of it.
    #[serde(default)]
    pub fixed_rows: Option<usize>,
}

impl ModelConfig {
    /// The catalogue's `mlp.f32` (docs/workload.md) in these terms.
    pub fn workload_mlp() -> Self {
        Self {
            format: Format::Native,
            file: Some("mlp.f32".into()),
            inputs: vec![Block::Cross, Block::UserFeats, Block::ItemFeats],
            output: None,
            hidden: vec![crate::data::H1, crate::data::H2],
            fixed_rows: None,
        }
    }

    /// Reads and checks `dir/model.yaml`.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("model.yaml");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let me: Self = recd_runtime::config::yaml::from_str(&text)
            .with_context(|| format!("parsing {}", path.display()))?;
        me.check()?;
        Ok(me)
    }

    /// Refuses empty inputs, a file outside the folder, and sizes beyond the limits.
    pub fn check(&self) -> anyhow::Result<()> {
        ensure!(!self.inputs.is_empty(), "inputs: at least one block");
        if let Some(f) = &self.file {
            ensure!(
                !f.is_empty() && !f.contains(['/', '\\']) && f != ".." && f != ".",
                "file {f:?} must be a file name in the version's folder"
            );
        }
        match self.format {
            Format::Onnx => {
                ensure!(self.hidden.is_empty(), "hidden: only for format native");
                ensure!(
                    self.fixed_rows.is_none_or(|r| (1..=65_536).contains(&r)),
                    "fixed_rows must be 1..=65536"
                );
            }
            Format::Native => {
                ensure!(self.output.is_none(), "output: only for format onnx");
                ensure!(
                    self.fixed_rows.is_none(),
                    "fixed_rows: only for format onnx"
                );
                ensure!(
                    self.hidden.len() <= MAX_HIDDEN.1
                        && self.hidden.iter().all(|&h| (1..=MAX_HIDDEN.0).contains(&h)),
                    "hidden: at most {} layers of 1..={} units",
                    MAX_HIDDEN.1,
                    MAX_HIDDEN.0
                );
            }
        }
        Ok(())
    }

    /// The model file's name.
    pub fn file_name(&self) -> &str {
        match (&self.file, self.format) {
            (Some(f), _) => f,
            (None, Format::Onnx) => "model.onnx",
            (None, Format::Native) => "weights.f32",
        }
    }

    /// The input row's width for `schema`, if within [`MAX_INPUT_WIDTH`].
    pub fn width(&self, schema: Schema) -> anyhow::Result<usize> {
        let w: usize = self.inputs.iter().map(|b| b.width(schema)).sum();
        ensure!(
            (1..=MAX_INPUT_WIDTH).contains(&w),
            "inputs assemble {w} floats for {}-d embeddings and {} features (1..={MAX_INPUT_WIDTH})",
            schema.dim,
            schema.feat_dim
        );
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<ModelConfig> {
        let c: ModelConfig = recd_runtime::config::yaml::from_str(text)?;
        c.check()?;
        Ok(c)
    }

    #[test]
    fn widths_follow_the_schema() {
        let c = parse("{format: onnx, inputs: [cross, user_feats, item_feats, dot]}").unwrap();
        assert_eq!(c.width(Schema::WORKLOAD).unwrap(), 64 + 16 + 16 + 1);
        let s = Schema {
            dim: 8,
            feat_dim: 0,
        };
        assert_eq!(c.width(s).unwrap(), 9);
        assert_eq!(c.file_name(), "model.onnx");
        assert_eq!(
            ModelConfig::workload_mlp().width(Schema::WORKLOAD).unwrap(),
            96
        );
    }

    #[test]
    fn bad_configs_are_refused() {
        for bad in [
            "{format: onnx, inputs: []}",
            "{format: tflite, inputs: [cross]}",
            "{format: onnx, inputs: [cross, user_age]}",
            "{format: onnx, inputs: [cross], file: ../../etc/passwd}",
            "{format: onnx, inputs: [cross], hidden: [4]}",
            "{format: native, inputs: [cross], hidden: [0]}",
            "{format: native, inputs: [cross], output: y}",
            "{format: onnx, inputs: [cross], typo: 1}",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
