//! The feature stores of the shards placed on this node (`features.store`): one redb file
//! per shard under `features.store.dir` (default `<data_dir>/store`; embedded, opened off
//! the async workers: redb may repair a file after a crash), a view of the shared Redis
//! per shard (redis), or none — before the feature shards start.

use recd_actors::candidates::index::ShardIndex;
use recd_actors::data::Catalogue;
use recd_actors::features::profile::ProfileSource;
use recd_actors::features::store::embedded::{Embedded, WriterSettings};
use recd_actors::features::store::redis::{Shared, SharedSettings};
use recd_actors::features::store::{FoldContext, NoStore, ProfileStore};
use recd_actors::items::{ItemStore, Items};
use recd_runtime::config::{Config, StoreBackend};
use recd_runtime::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

/// The store of each shard in `held`, in order.
pub(crate) async fn open(
    config: &Config,
    items: &Arc<Items>,
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
                    items: Arc::clone(items),
                    max_recent: sc.recent_items,
                },
                dedupe_window: Duration::from_secs(sc.dedupe_window_secs),
                commit_seconds: metrics.store_commit_seconds.clone(),
                shards: config.features.shards,
            };
            stores.push(Arc::new(Shared::connect(s, settings).await?) as Arc<dyn ProfileStore>);
            tracing::info!(shard = s, "feature store (redis) connected");
        }
        return Ok(stores);
    }
    let dir = (sc.dir.clone()).unwrap_or_else(|| config.node.data_dir.join("store"));
    let fold = FoldContext {
        source,
        items: Arc::clone(items),
        max_recent: sc.recent_items,
    };
    let (held, window) = (held.to_vec(), Duration::from_secs(sc.dedupe_window_secs));
    let shards = config.features.shards;
    let commit_window = Duration::from_micros(sc.commit_window_us);
    let commit_seconds = metrics.store_commit_seconds.clone();
    tokio::task::spawn_blocking(move || {
        held.iter()
            .map(|s| {
                let settings = WriterSettings {
                    fold: fold.clone(),
                    dedupe_window: window,
                    commit_seconds: commit_seconds.clone(),
                    layout: (*s, shards),
                    window: commit_window,
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

/// The live items: the catalogue plus the item store's changes, replayed into the index
/// shards held here (`held`, in the order of `indexes`). Item writes need one node with
/// the embedded store: elsewhere there is no item store and the catalogue stays as
/// loaded. Blocking.
pub(crate) fn open_items(
    config: &Config,
    catalogue: &Arc<Catalogue>,
    indexes: &[Arc<ShardIndex>],
    held: &[usize],
) -> anyhow::Result<(Arc<Items>, Option<Arc<ItemStore>>)> {
    let items = Arc::new(Items::new(Arc::clone(catalogue)));
    let sc = &config.features.store;
    if sc.backend != StoreBackend::Embedded || config.cluster.listen.is_some() {
        return Ok((items, None));
    }
    let dir = (sc.dir.clone()).unwrap_or_else(|| config.node.data_dir.join("store"));
    let store = ItemStore::open(&dir.join("items.redb"))?;
    let changes = store.all(catalogue.schema)?;
    let shards = config.index.shards as u64;
    for (slot, &s) in held.iter().enumerate() {
        let mine: Vec<_> = (changes.iter())
            .filter(|(id, _)| id % shards == s as u64)
            .map(|(id, row)| (*id, row.clone().map(Arc::new)))
            .collect();
        indexes[slot].apply(&mine)?;
    }
    for (id, row) in changes {
        items.set(id, row.map(Arc::new));
    }
    let (changed, deleted) = items.changes();
    tracing::info!(changed, deleted, "item changes replayed");
    Ok((items, Some(Arc::new(store))))
}
