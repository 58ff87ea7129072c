//! The feature stores of the shards placed on this node (`features.store`): one redb file
//! per shard under `features.store.dir` (default `<data_dir>/store`; embedded, opened off
//! the async workers: redb may repair a file after a crash), a view of the shared Redis
//! per shard (redis), or none — before the feature shards start.

use recd_actors::data::Catalogue;
use recd_actors::features::profile::ProfileSource;
use recd_actors::features::store::embedded::{Embedded, WriterSettings};
use recd_actors::features::store::redis::{Shared, SharedSettings};
use recd_actors::features::store::{FoldContext, NoStore, ProfileStore};
use recd_runtime::config::{Config, StoreBackend};
use recd_runtime::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// The store of each shard in `held`, in order.
pub(crate) async fn open(
    config: &Config,
    catalogue: &Arc<Catalogue>,
    source: ProfileSource,
    held: &[usize],
    metrics: &Metrics,
) -> anyhow::Result<Vec<Arc<dyn ProfileStore>>> {
    let sc = &config.features.store;
    if sc.backend == StoreBackend::None {
        return Ok(held.iter().map(|_| Arc::new(NoStore) as _).collect());
    }
    if sc.backend == StoreBackend::Redis {
        let mut stores = Vec::with_capacity(held.len());
        for &s in held {
            let settings = SharedSettings {
                url: sc.redis.url.clone(),
                prefix: sc.redis.prefix.clone(),
                timeout: Duration::from_millis(sc.redis.timeout_ms),
                require_fsync: sc.redis.require_fsync,
                fold: FoldContext {
                    source: source.clone(),
                    catalogue: Arc::clone(catalogue),
                    max_recent: sc.recent_items,
                },
                dedupe_window: Duration::from_secs(sc.dedupe_window_secs),
                commit_seconds: metrics.store_commit_seconds.clone(),
            };
            stores.push(Arc::new(Shared::connect(s, settings).await?) as Arc<dyn ProfileStore>);
            tracing::info!(shard = s, "feature store (redis) connected");
        }
        return Ok(stores);
    }
    let dir = (sc.dir.clone()).unwrap_or_else(|| config.node.data_dir.join("store"));
    let fold = FoldContext {
        source,
        catalogue: Arc::clone(catalogue),
        max_recent: sc.recent_items,
    };
    let (held, window) = (held.to_vec(), Duration::from_secs(sc.dedupe_window_secs));
    let commit_seconds = metrics.store_commit_seconds.clone();
    tokio::task::spawn_blocking(move || {
        held.iter()
            .map(|s| {
                let settings = WriterSettings {
                    fold: fold.clone(),
                    dedupe_window: window,
                    commit_seconds: commit_seconds.clone(),
                };
                let store = Embedded::open(&dir.join(format!("features-{s}.redb")), settings)?;
                tracing::info!(
                    shard = s,
                    profiles = store.profiles()?,
                    "feature store open"
                );
                Ok(Arc::new(store) as Arc<dyn ProfileStore>)
            })
            .collect()
    })
    .await?
}
