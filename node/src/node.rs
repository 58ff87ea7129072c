//! Bringing one node's roles up and down (see the crate docs for the order).

use anyhow::Context;
use ractor::{Actor, ActorRef};
use recd_actors::candidates::index::ShardIndex;
use recd_actors::candidates::shard::IndexShardArgs;
use recd_actors::data::Catalogue;
use recd_actors::experiments::AbScenarios;
use recd_actors::features::profile::ProfileSource;
use recd_actors::features::shard::FeatureShardArgs;
use recd_actors::gateway::GatewayArgs;
use recd_actors::ingress::routes::{ClusterView, FaultTargets, IngressState, Serving};
use recd_actors::ingress::{Ingress, IngressArgs, IngressMessage};
use recd_actors::pipeline::{PipelineArgs, PipelineCtx, PipelineSettings};
use recd_actors::ranker::actor::RankerArgs;
use recd_actors::ranker::model::Mlp;
use recd_runtime::cluster::{Cluster, Membership};
use recd_runtime::compute::ComputePool;
use recd_runtime::config::Config;
use recd_runtime::lanes::LaneSaturation;
use recd_runtime::metrics::Metrics;
use recd_runtime::pool::{
    PoolArgs, PoolMessage, PoolSlots, PoolSupervisor, RestartPolicy, WorkerFactory,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Jobs the compute pool queues before refusing (backpressure to the stages).
const COMPUTE_QUEUE: usize = 1024;

/// A running node.
pub struct Node {
    /// Where HTTP is served.
    pub http_addr: SocketAddr,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    ingress: ActorRef<IngressMessage>,
    /// The cluster endpoint, when this node runs in a cluster.
    cluster: Option<Cluster>,
    /// Pools in shutdown order: gateway, pipeline, then the shards.
    pools: Vec<ActorRef<PoolMessage>>,
    ingress_state: Arc<IngressState>,
}

impl Node {
    /// Starts every role of `config` and returns once the node is ready.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new());
        let ab = match &config.experiments.scenarios_file {
            Some(p) => AbScenarios::load(p)?,
            None => AbScenarios::default(),
        };
        let listen: SocketAddr = config
            .node
            .http_listen
            .parse()
            .context("node.http_listen")?;
        let saturation = Arc::new(LaneSaturation::new(config.gateway.lanes.len()));
        let cluster = match config.cluster.listen {
            Some(_) => Some(Cluster::start(&config.cluster).await?),
            None => None,
        };
        let membership = cluster.as_ref().map_or_else(
            || {
                let me = format!("{}@{}", config.cluster.node_name, config.cluster.hostname);
                Membership::new(me, config.cluster.replicas)
            },
            |c| Arc::clone(&c.membership),
        );
        let view = ClusterView {
            membership,
            index_shards: config.index.shards,
            feature_shards: config.features.shards,
        };
        let ingress_state = Arc::new(IngressState::new(
            config.ingress.clone(),
            config.gateway.clone(),
            ab,
            Arc::clone(&metrics),
            Arc::clone(&saturation),
            view,
            config.admin.fault_injection,
        ));
        let (ingress, _) = Actor::spawn(
            None,
            Ingress,
            IngressArgs {
                listen,
                state: Arc::clone(&ingress_state),
            },
        )
        .await
        .context("starting http ingress")?;
        let http_addr =
            ractor::call!(ingress, IngressMessage::LocalAddr).context("ingress address")?;

        let compute = ComputePool::new(
            config.compute.threads,
            COMPUTE_QUEUE,
            Some(metrics.compute_expired.clone()),
        );
        let (catalogue, indexes) = {
            let config = config.clone();
            let threads = compute.threads();
            tokio::task::spawn_blocking(move || load_data(&config, threads)).await??
        };
        for (s, idx) in indexes.iter().enumerate() {
            metrics
                .shard_items
                .with_label_values(&[&s.to_string()])
                .set(idx.len() as i64);
        }
        let source = ProfileSource::new(Arc::new(catalogue.centers.clone()));
        let policy = RestartPolicy {
            max_restarts: config.supervision.max_restarts,
            window: Duration::from_secs(config.supervision.window_secs),
            backoff: Duration::from_millis(config.supervision.backoff_ms),
        };

        let mut pools = Vec::new();
        let features = PoolSlots::new(config.features.shards);
        let index = PoolSlots::new(config.index.shards);
        let ranker = PoolSlots::new(config.ranker.workers);
        let pipeline = PoolSlots::new(config.gateway.pipeline_workers);
        let feature_args = FeatureShardArgs {
            source: source.clone(),
            ttl: Duration::from_secs(config.features.cache_ttl_secs),
            max_entries: config.features.cache_max_entries,
            metrics: Arc::clone(&metrics),
        };
        pools.push(start_pool("features", feature_args, &features, policy, &metrics).await?);
        let index_args = IndexShardArgs {
            indexes: Arc::new(indexes),
            compute: compute.clone(),
        };
        pools.push(start_pool("index", index_args, &index, policy, &metrics).await?);
        let ranker_args = RankerArgs {
            model: Arc::new(Mlp::from_flat(&catalogue.mlp)?),
            catalogue: Arc::clone(&catalogue),
            compute: compute.clone(),
        };
        pools.push(start_pool("ranker", ranker_args, &ranker, policy, &metrics).await?);
        let settings = PipelineSettings {
            features_timeout: Duration::from_millis(config.features.timeout_ms),
            index_timeout: Duration::from_millis(config.index.timeout_ms),
            ranker_timeout: Duration::from_millis(config.ranker.timeout_ms),
            per_shard_k: config.per_shard_k(),
            candidates: config.index.candidates,
            truncate_to: config.ranker.truncate_to,
            profile_max_age: config
                .gateway
                .lanes
                .iter()
                .map(|l| {
                    let ttl = config.features.cache_ttl_secs.saturating_mul(1000);
                    Duration::from_millis(l.profile_max_age_ms.unwrap_or(ttl).min(ttl))
                })
                .collect(),
        };
        let ctx = PipelineCtx::new(
            Arc::clone(&features),
            Arc::clone(&index),
            Arc::clone(&ranker),
            catalogue,
            source,
            settings,
            Arc::clone(&metrics),
        );
        pools.insert(
            0,
            start_pool(
                "pipeline",
                PipelineArgs(Arc::new(ctx)),
                &pipeline,
                policy,
                &metrics,
            )
            .await?,
        );
        let gateway = PoolSlots::new(1);
        let gateway_args = GatewayArgs {
            config: config.gateway.clone(),
            workers: Arc::clone(&pipeline),
            metrics: Arc::clone(&metrics),
            saturation,
        };
        pools.insert(
            0,
            start_pool("gateway", gateway_args, &gateway, policy, &metrics).await?,
        );
        let serving = Serving {
            gateway,
            pipeline,
            faults: FaultTargets {
                features,
                index,
                ranker,
            },
        };
        if ingress_state.serving.set(serving).is_err() {
            anyhow::bail!("node started twice");
        }
        tracing::info!(%http_addr, "ready");
        Ok(Self {
            http_addr,
            metrics,
            ingress,
            cluster,
            pools,
            ingress_state,
        })
    }

    /// Stops the node: not ready, HTTP drained, then gateway, pipeline and shard pools, then
    /// it leaves the cluster.
    pub async fn shutdown(self) {
        self.ingress_state
            .draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let wait = Some(Duration::from_secs(15));
        let _ = self.ingress.stop_and_wait(None, wait).await;
        for pool in self.pools {
            let _ = pool.stop_and_wait(None, wait).await;
        }
        if let Some(cluster) = self.cluster {
            cluster.stop().await;
        }
    }
}

async fn start_pool<F: WorkerFactory>(
    name: &'static str,
    factory: F,
    slots: &Arc<PoolSlots<<F::Worker as Actor>::Msg>>,
    policy: RestartPolicy,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<ActorRef<PoolMessage>> {
    let args = PoolArgs {
        name,
        factory,
        slots: Arc::clone(slots),
        policy,
        metrics: Arc::clone(metrics),
    };
    let (sup, _) = Actor::spawn(None, PoolSupervisor::<F>::default(), args)
        .await
        .with_context(|| format!("starting pool {name}"))?;
    Ok(sup)
}

/// Generates the catalogue if the data folder is empty (and allowed), loads it, and
/// loads or builds every index shard. Blocking.
fn load_data(
    config: &Config,
    threads: usize,
) -> anyhow::Result<(Arc<Catalogue>, Vec<Arc<ShardIndex>>)> {
    let dir = &config.node.data_dir;
    if !Catalogue::exists(dir) {
        anyhow::ensure!(
            config.data.generate_if_missing,
            "no catalogue in {} and data.generate_if_missing is false",
            dir.display()
        );
        tracing::info!(dir = %dir.display(), items = config.data.items, "generating the default catalogue");
        recd_actors::datagen::generate(dir, config.data.items, config.data.seed, |done| {
            tracing::info!(done, total = config.data.items, "generating items");
        })?;
    }
    let catalogue = Arc::new(Catalogue::load(dir)?);
    tracing::info!(items = catalogue.len(), "catalogue loaded");
    let build_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let shards = config.index.shards;
    let mut indexes = Vec::with_capacity(shards);
    for s in 0..shards {
        let started = std::time::Instant::now();
        let progress =
            |done: usize, total: usize| tracing::info!(shard = s, done, total, "indexing");
        let (idx, loaded) = ShardIndex::load_or_build(
            &dir.join("index"),
            &catalogue,
            s,
            shards,
            &config.index,
            threads.max(build_threads),
            &progress,
        )?;
        tracing::info!(
            shard = s,
            items = idx.len(),
            loaded,
            seconds = started.elapsed().as_secs_f64(),
            "index shard ready"
        );
        indexes.push(Arc::new(idx));
    }
    Ok((catalogue, indexes))
}
