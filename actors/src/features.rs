//! Feature fetch: user profiles from feature shards.
//!
//! - [`profile`]: the derived-profile rule of docs/workload.md (FNV-1a 64, splitmix64), the
//!   profile source for unknown and synthetic users.
//! - [`cache`]: the TTL + max-entries cache each shard keeps over the source.
//! - [`shard`]: the `FeatureShard` actor; the pipeline sends it one batched lookup per
//!   micro-batch for the users it owns ([`shard_of`]), the ingress its writes.
//! - [`store`]: the durable store behind the cache (`store::embedded`: redb), and how
//!   writes apply ([`fold`]: the event rule; [`codec`]: the stored bytes).

pub mod cache;
pub mod codec;
pub mod fold;
pub mod profile;
pub mod shard;
pub mod store;

/// Feature shard owning `user_id` among `shards` (a remix of FNV-1a so that shard and
/// A/B bucket are independent).
pub fn shard_of(user_id: &str, shards: usize) -> usize {
    let mut sm = profile::SplitMix64::new(profile::fnv1a64(user_id));
    (sm.next_u64() % shards as u64) as usize
}
