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
use recd_actors::ingress::ops::{ClusterView, FaultTargets};
use recd_actors::ingress::routes::{IngressState, Serving};
use recd_actors::ingress::{Ingress, IngressArgs, IngressMessage};
use recd_actors::pipeline::{PipelineArgs, PipelineCtx, PipelineSettings};
use recd_actors::ranker::actor::RankerArgs;
use recd_actors::ranker::model::Mlp;
use recd_actors::remote::endpoint::Served;
use recd_actors::remote::heartbeat::HeartbeatArgs;
use recd_actors::remote::router::{Remote, Router};
use recd_actors::remote::LocalShards;
use recd_runtime::cluster::{Cluster, Membership};
use recd_runtime::compute::ComputePool;
use recd_runtime::config::Config;
use recd_runtime::config::Role;
use recd_runtime::lanes::LaneSaturation;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::placement::{Placement, ShardKind};
use recd_runtime::pool::{
    PoolArgs, PoolMessage, PoolSlots, PoolSupervisor, RestartPolicy, WorkerFactory,
};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

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
        let cc = &config.cluster;
        let cluster = match cc.listen {
            Some(_) => Some(Cluster::start(cc).await?),
            None => None,
        };
        let (membership, peers) = match &cluster {
            Some(c) => (Arc::clone(&c.membership), Arc::clone(&c.peers)),
            None => (
                Membership::new(cc.node_name.clone()),
                Peers::new(Duration::from_millis(cc.heartbeat_timeout_ms), 1),
            ),
        };
        let placement = Placement::for_cluster(cc, config.index.shards, config.features.shards);
        for (kind, sets) in &placement.map {
            for (s, nodes) in sets.iter().enumerate() {
                for n in nodes {
                    let labels = [kind.as_str(), &s.to_string(), n.as_str()];
                    metrics.shard_placement.with_label_values(&labels).set(1);
                }
            }
        }
        let held = |kind, role| {
            if cc.has_role(role) {
                placement.shards_of(kind, &cc.node_name)
            } else {
                Vec::new()
            }
        };
        let features = LocalShards::new(
            held(ShardKind::Features, Role::Features),
            config.features.shards,
        );
        let index = LocalShards::new(held(ShardKind::Index, Role::Index), config.index.shards);
        let ranker = cc
            .has_role(Role::Ranker)
            .then(|| PoolSlots::new(config.ranker.workers));
        let remote = Remote {
            membership: Arc::clone(&membership),
            peers: Arc::clone(&peers),
            clustered: cluster.is_some(),
            hedge_delay: cc.hedge_delay_ms.map(Duration::from_millis),
        };
        let router = Arc::new(Router::new(
            features.clone(),
            index.clone(),
            ranker.clone(),
            remote,
            Arc::clone(&metrics),
        ));
        let roles: Vec<Role> = Role::ALL.into_iter().filter(|r| cc.has_role(*r)).collect();
        tracing::info!(?roles, index = ?index.held(), features = ?features.held(), "placement");
        let view = ClusterView {
            membership: Arc::clone(&membership),
            peers: Arc::clone(&peers),
            placement,
            router: Arc::clone(&router),
            roles,
            covered: AtomicBool::new(false),
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
            let held = index.held().to_vec();
            tokio::task::spawn_blocking(move || load_data(&config, &held, threads)).await??
        };
        for (&s, idx) in index.held().iter().zip(&indexes) {
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
        let feature_args = FeatureShardArgs {
            source: source.clone(),
            ttl: Duration::from_secs(config.features.cache_ttl_secs),
            max_entries: config.features.cache_max_entries,
            metrics: Arc::clone(&metrics),
        };
        if !features.held().is_empty() {
            let p = start_pool("features", feature_args, &features.slots, policy, &metrics);
            pools.push(p.await?);
        }
        let index_args = IndexShardArgs {
            indexes: Arc::new(indexes),
            compute: compute.clone(),
        };
        if !index.held().is_empty() {
            pools.push(start_pool("index", index_args, &index.slots, policy, &metrics).await?);
        }
        let ranker_args = RankerArgs {
            model: Arc::new(Mlp::from_flat(&catalogue.mlp)?),
            catalogue: Arc::clone(&catalogue),
            compute: compute.clone(),
        };
        if let Some(slots) = &ranker {
            pools.push(start_pool("ranker", ranker_args, slots, policy, &metrics).await?);
        }
        if cluster.is_some() {
            // peers find this node's shards once the endpoint joins their groups
            let served = Served {
                router: Arc::clone(&router),
                items: catalogue.len(),
                permits: Arc::new(Semaphore::new(cc.max_served_in_flight)),
                metrics: Arc::clone(&metrics),
            };
            let slots = PoolSlots::new(1);
            pools.insert(
                0,
                start_pool("endpoint", served, &slots, policy, &metrics).await?,
            );
            let beat = HeartbeatArgs {
                interval: Duration::from_millis(cc.heartbeat_interval_ms),
                timeout: Duration::from_millis(cc.heartbeat_timeout_ms),
                peers: Arc::clone(&peers),
                membership: Arc::clone(&membership),
                router: Arc::clone(&router),
                shards: (config.index.shards, config.features.shards),
                metrics: Arc::clone(&metrics),
            };
            let slots = PoolSlots::new(1);
            pools.insert(
                0,
                start_pool("heartbeat", beat, &slots, policy, &metrics).await?,
            );
        }
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
        let ctx = PipelineCtx::new(router, catalogue, source, settings, Arc::clone(&metrics));
        let takes_requests = cc.has_role(Role::Ingress);
        let pipeline = PoolSlots::new(if takes_requests {
            config.gateway.pipeline_workers
        } else {
            0
        });
        let gateway = PoolSlots::new(usize::from(takes_requests));
        if takes_requests {
            let args = PipelineArgs(Arc::new(ctx));
            pools.insert(
                0,
                start_pool("pipeline", args, &pipeline, policy, &metrics).await?,
            );
            let gateway_args = GatewayArgs {
                config: config.gateway.clone(),
                workers: Arc::clone(&pipeline),
                metrics: Arc::clone(&metrics),
                saturation,
            };
            let p = start_pool("gateway", gateway_args, &gateway, policy, &metrics);
            pools.insert(0, p.await?);
        }
        let serving = Serving {
            takes_requests,
            gateway,
            pipeline,
            faults: FaultTargets {
                features: features.slots,
                index: index.slots,
                ranker: ranker.unwrap_or_else(|| PoolSlots::new(0)),
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
/// loads or builds the index shards placed on this node (`held`). Blocking.
fn load_data(
    config: &Config,
    held: &[usize],
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
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let shards = config.index.shards;
    let mut indexes = Vec::with_capacity(held.len());
    for &s in held {
        let started = std::time::Instant::now();
        let progress =
            |done: usize, total: usize| tracing::info!(shard = s, done, total, "indexing");
        let (idx, loaded) = ShardIndex::load_or_build(
            &dir.join("index"),
            &catalogue,
            s,
            shards,
            &config.index,
            (threads.max(cores), config.index_build_threads()),
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
