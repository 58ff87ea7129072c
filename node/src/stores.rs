//! The feature stores of the shards placed on this node (`features.store`): one redb file
//! per shard under `features.store.dir` (default `<data_dir>/store`; embedded, opened off
//! the async workers: redb may repair a file after a crash), a view of the shared Redis
//! per shard (redis), or none — before the feature shards start.

use recd_actors::candidates::ann::AnnIndex;
use recd_actors::data::Catalogue;
use recd_actors::features::profile::ProfileSource;
use recd_actors::features::store::embedded::{Embedded, WriterSettings};
use recd_actors::features::store::redis::{Shared, SharedSettings};
use recd_actors::features::store::{FoldContext, NoStore, ProfileStore};
use recd_actors::item_log::{Applier, ItemLog, ItemWrites};
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

/// The live items: the catalogue plus the item changes made since, applied to the
/// index shards held here (`held`, in the order of `indexes`). With the redis backend the
/// changes are the shared item log's (replayed, then tailed); a single node with the
/// embedded store replays its item store; otherwise there are no item writes and the
/// catalogue stays as loaded.
pub(crate) async fn open_items(
    config: &Config,
    catalogue: &Arc<Catalogue>,
    indexes: &[Arc<dyn AnnIndex>],
    held: &[usize],
    metrics: &Arc<Metrics>,
) -> anyhow::Result<(Arc<Items>, Option<Arc<ItemWrites>>)> {
    let items = Arc::new(Items::new(Arc::clone(catalogue)));
    for index in indexes {
        index.attach(Arc::clone(&items));
    }
    let applier = Applier {
        items: Arc::clone(&items),
        indexes: held.iter().copied().zip(indexes.iter().cloned()).collect(),
        shards: config.index.shards,
    };
    let sc = &config.features.store;
    let writes = match sc.backend {
        StoreBackend::Redis => {
            let r = &sc.redis;
            let timeout = Duration::from_millis(r.timeout_ms);
            let settings = (timeout, r.require_fsync);
            let log = ItemLog::open(&r.url, &r.prefix, settings, applier, Arc::clone(metrics));
            ItemWrites::Shared(log.await?)
        }
        StoreBackend::Embedded if config.cluster.listen.is_none() => {
            let dir = (sc.dir.clone()).unwrap_or_else(|| config.node.data_dir.join("store"));
            let schema = catalogue.schema;
            let store = tokio::task::spawn_blocking(move || -> anyhow::Result<ItemStore> {
                let store = ItemStore::open(&dir.join("items.redb"))?;
                let changes: Vec<_> = (store.all(schema)?.into_iter())
                    .map(|(id, row)| (id, row.map(Arc::new)))
                    .collect();
                applier.apply(&changes)?;
                Ok(store)
            });
            ItemWrites::Local(Arc::new(store.await??))
        }
        _ => return Ok((items, None)),
    };
    let (changed, deleted) = items.changes();
    tracing::info!(changed, deleted, "item changes replayed");
    Ok((items, Some(Arc::new(writes))))
}

/// One past the largest item id a peer may name: the catalogue's, unless items can be
/// written in the cluster (the redis backend's item log), then any id.
pub(crate) fn id_bound(config: &Config, catalogue: &Catalogue) -> usize {
    match config.features.store.backend {
        StoreBackend::Redis => recd_actors::data::MAX_ITEM_ID as usize + 1,
        _ => catalogue.id_bound(),
    }
}
