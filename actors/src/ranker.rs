//! Re-ranking: the MLP of docs/workload.md and the `Ranker` actor pool that runs it.
//!
//! - [`model`]: weights from `mlp.f32`, input assembly and batched scoring with a real
//!   SGEMM (matrixmultiply) over all candidates of a micro-batch at once.
//! - [`actor`]: the `Ranker` actor; one scoring call per micro-batch, run on the
//!   compute pool.

pub mod actor;
pub mod model;
