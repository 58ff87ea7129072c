//! Re-ranking: the model repository, its loader, the scorers, and the `Ranker` actor
//! pool that runs them.
//!
//! - [`config`]: `model.yaml` — format, file, the blocks an input row is built from.
//! - [`model`]: one loaded version: input assembly, scoring, the warm-up check.
//! - [`native`]: the dense SGEMM format (`mlp.f32` is one); [`onnx`]: ONNX by tract.
//! - [`repo`]: what a node serves of the repository, swapped atomically.
//! - [`loader`]: the thread that scans, loads, warms and frees versions.
//! - [`scoring`]: one call — a model over every candidate, or a cascade.
//! - [`actor`]: the `Ranker` actor; one scoring call per micro-batch, run on the
//!   compute pool with the version the call names.

pub mod actor;
pub mod config;
pub mod loader;
pub mod model;
pub mod native;
pub mod onnx;
pub mod repo;
pub mod scoring;
