//! Candidate generation: ANN over the item catalogue split into index shards.
//!
//! - [`ann`]: the backend seam, `AnnIndex`; [`open`]: `load_or_build` of the configured
//!   backend.
//! - [`index`]: `ShardIndex`, one usearch HNSW index over a partition of the items
//!   (item `i` belongs to shard `i % S`), built once and snapshotted to disk; plus the
//!   top-k merge across shards and the brute-force reference used for recall.
//! - [`flat`]: `FlatIndex`, exact search over the same partition by batched SGEMM.
//! - [`shard`]: the `IndexShard` actor; it receives one batched search per micro-batch
//!   and runs it on the compute pool.

pub mod ann;
pub mod flat;
pub mod index;
pub mod open;
pub mod shard;
