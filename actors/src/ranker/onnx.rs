//! ONNX models run by tract (pure Rust, pinned; docs/adr/0019). The graph takes one
//! f32 input `[rows, width]` and answers one score per row (`[rows]` or `[rows, 1]`).
//! The batch axis is a symbol, so one optimised plan serves any number of rows.

use anyhow::{bail, ensure, Context};
use std::path::Path;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

/// A loaded, optimised ONNX scorer.
pub struct OnnxModel {
    plan: TypedSimplePlan<TypedModel>,
    width: usize,
    /// Rows the plan was optimised for (`None`: any).
    fixed_rows: Option<usize>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("width", &self.width)
            .finish_non_exhaustive()
    }
}

impl OnnxModel {
    /// Loads `path`, checks its single input is `width` floats wide, picks the output
    /// named `output` (or the first) and optimises the graph for any number of rows.
    pub fn load(
        path: &Path,
        width: usize,
        output: Option<&str>,
        fixed_rows: Option<usize>,
    ) -> anyhow::Result<Self> {
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("reading ONNX {}", path.display()))?;
        ensure!(
            model.inputs.len() == 1,
            "the graph takes {} inputs; recd feeds one [rows, width] f32 tensor",
            model.inputs.len()
        );
        // the declared input width must be the config's, when the file declares one
        let declared = model.input_fact(0)?.shape.clone();
        let dims: Vec<_> = declared.dims().cloned().collect();
        if let Some(last) = dims.last().and_then(|d| d.concretize()) {
            if let Ok(w) = last.to_i64() {
                ensure!(
                    w as usize == width,
                    "the graph's input is {w} wide; its inputs assemble {width} floats"
                );
            }
        }
        if dims.len() != 2 && !dims.is_empty() {
            bail!(
                "the graph's input has rank {}; recd feeds [rows, width]",
                dims.len()
            );
        }
        if let Some(name) = output {
            let at = (model.outputs.iter())
                .position(|o| {
                    model.node(o.node).name == name || model.outlet_label(*o) == Some(name)
                })
                .with_context(|| format!("the graph has no output named {name:?}"))?;
            let chosen = model.outputs[at];
            model.set_output_outlets(&[chosen])?;
        } else if model.outputs.len() > 1 {
            let first = model.outputs[0];
            model.set_output_outlets(&[first])?;
        }
        let rows = match fixed_rows {
            Some(n) => n.to_dim(),
            None => model.symbols.sym("rows").to_dim(),
        };
        model.set_input_fact(0, f32::fact([rows, width.to_dim()]).into())?;
        let plan = model
            .into_optimized()
            .context("optimising the graph for [rows, width] f32 input")?
            .into_runnable()?;
        Ok(Self {
            plan,
            width,
            fixed_rows,
        })
    }

    /// One score per row of `x` (`rows × width`).
    pub fn forward(&self, x: Vec<f32>, rows: usize) -> anyhow::Result<Vec<f32>> {
        let Some(chunk) = self.fixed_rows else {
            return self.run(x, rows);
        };
        let mut out = Vec::with_capacity(rows);
        for part in x.chunks(chunk * self.width) {
            let n = part.len() / self.width;
            let mut padded = part.to_vec();
            padded.resize(chunk * self.width, 0.0);
            out.extend_from_slice(&self.run(padded, chunk)?[..n]);
        }
        Ok(out)
    }

    fn run(&self, x: Vec<f32>, rows: usize) -> anyhow::Result<Vec<f32>> {
        let input = tract_ndarray::Array2::from_shape_vec((rows, self.width), x)?;
        let out = self.plan.run(tvec!(Tensor::from(input).into()))?;
        let scores = out[0].to_array_view::<f32>()?;
        ensure!(
            scores.len() == rows,
            "the graph answered {} values for {rows} rows (shape {:?})",
            scores.len(),
            scores.shape()
        );
        Ok(scores.iter().copied().collect())
    }
}
