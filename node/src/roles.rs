//! The supervised pools of each role, started in dependency order and stopped in the
//! reverse: data roles (feature shards, index shards, rankers) → the remote endpoint and
//! heartbeat (in a cluster) → the request path (pipeline workers, gateway).

use ractor::{Actor, ActorRef};
use recd_actors::candidates::ann::AnnIndex;
use recd_actors::candidates::shard::IndexShardArgs;
use recd_actors::data::Catalogue;
use recd_actors::experiments::{AbScenarios, PlanDefaults};
use recd_actors::features::profile::ProfileSource;
use recd_actors::features::shard::FeatureShardArgs;
use recd_actors::gateway::{GatewayArgs, GatewayMessage};
use recd_actors::ingress::state::IngressState;
use recd_actors::items::Items;
use recd_actors::pipeline::shadow::Shadow;
use recd_actors::pipeline::{PipelineArgs, PipelineCtx, PipelineMessage, PipelineSettings};
use recd_actors::ranker::actor::RankerArgs;
use recd_actors::ranker::loader::ModelLoader;
use recd_actors::ranker::model::Model;
use recd_actors::ranker::repo::Models;
use recd_actors::remote::endpoint::Served;
use recd_actors::remote::heartbeat::HeartbeatArgs;
use recd_actors::remote::replicas::NodeReplicas;
use recd_actors::remote::router::{Router, ShardCounts};
use recd_actors::remote::wire::Limits;
use recd_actors::stage::local::LocalStages;
use recd_actors::types::ModelRef;
use recd_runtime::cluster::Membership;
use recd_runtime::compute::ComputePool;
use recd_runtime::config::{BatchingMode, Config};
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::pool::root::{Health, RootMessage};
use recd_runtime::pool::{
    PoolArgs, PoolMessage, PoolSlots, PoolSupervisor, RestartPolicy, WorkerFactory,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Jobs the compute pool queues before refusing (backpressure to the stages).
const COMPUTE_QUEUE: usize = 1024;

/// The node's pool supervisors, each linked to the root, in start order.
pub(crate) struct Pools {
    root: ActorRef<RootMessage>,
    /// The node's health, which every pool reports to.
    pub(crate) health: Arc<Health>,
    policy: RestartPolicy,
    /// The node's metrics.
    pub(crate) metrics: Arc<Metrics>,
    started: Vec<ActorRef<PoolMessage>>,
}

impl Pools {
    pub(crate) fn new(
        root: ActorRef<RootMessage>,
        health: Arc<Health>,
        config: &Config,
        metrics: Arc<Metrics>,
    ) -> Self {
        let s = &config.supervision;
        let policy = RestartPolicy {
            max_restarts: s.max_restarts,
            window: Duration::from_secs(s.window_secs),
            backoff: Duration::from_millis(s.backoff_ms),
        };
        Self {
            root,
            health,
            policy,
            metrics,
            started: Vec::new(),
        }
    }

    /// Starts pool `name` over `slots`, supervised by the root, stopped by [`Self::stop`].
    async fn start<F: WorkerFactory>(
        &mut self,
        name: &'static str,
        factory: F,
        slots: &Arc<PoolSlots<<F::Worker as Actor>::Msg>>,
    ) -> anyhow::Result<()> {
        let sup = self.spawn(name, factory, slots).await?;
        self.started.push(sup);
        Ok(())
    }

    /// Starts pool `name` over `slots`, supervised by the root; the caller stops it.
    pub(crate) async fn spawn<F: WorkerFactory>(
        &self,
        name: &'static str,
        factory: F,
        slots: &Arc<PoolSlots<<F::Worker as Actor>::Msg>>,
    ) -> anyhow::Result<ActorRef<PoolMessage>> {
        let args = PoolArgs {
            name,
            factory,
            slots: Arc::clone(slots),
            policy: self.policy,
            metrics: Arc::clone(&self.metrics),
            health: Arc::clone(&self.health),
        };
        let (sup, _) = Actor::spawn_linked(
            None,
            PoolSupervisor::<F>::default(),
            args,
            self.root.get_cell(),
        )
        .await
        .map_err(|e| anyhow::anyhow!("starting pool {name}: {e}"))?;
        let _ = self.root.cast(RootMessage::Watch {
            id: sup.get_id(),
            name: format!("pool {name}"),
        });
        Ok(sup)
    }

    /// Stops every pool, the last started first.
    pub(crate) async fn stop(self, wait: Option<Duration>) {
        for pool in self.started.into_iter().rev() {
            let _ = pool.stop_and_wait(None, wait).await;
        }
    }
}

/// What the data roles and the request path share.
pub(crate) struct DataRoles<'a> {
    pub(crate) config: &'a Config,
    pub(crate) catalogue: &'a Arc<Catalogue>,
    pub(crate) items: &'a Arc<Items>,
    pub(crate) local: &'a Arc<LocalStages>,
    pub(crate) metrics: &'a Arc<Metrics>,
    pub(crate) compute: ComputePool,
    pub(crate) ab: &'a AbScenarios,
}

impl DataRoles<'_> {
    /// The compute pool every CPU-heavy stage shares.
    pub(crate) fn compute(config: &Config, metrics: &Metrics) -> ComputePool {
        let expired = Some(metrics.compute_expired.clone());
        ComputePool::new(config.compute.threads, COMPUTE_QUEUE, expired)
    }

    fn source(&self) -> ProfileSource {
        ProfileSource::new(self.catalogue)
    }

    /// Feature shards, index shards (over `indexes`, in held order) and rankers placed
    /// here; with rankers, the model loader too.
    pub(crate) async fn start(
        &self,
        pools: &mut Pools,
        indexes: Vec<Arc<dyn AnnIndex>>,
    ) -> anyhow::Result<Option<ModelLoader>> {
        let (config, local) = (self.config, self.local);
        for (&s, idx) in local.index.held().iter().zip(&indexes) {
            (self.metrics.shard_items)
                .with_label_values(&[&s.to_string()])
                .set(idx.len() as i64);
        }
        if !local.features.held().is_empty() {
            let held = local.features.held();
            let stores =
                crate::stores::open(config, self.items, self.source(), held, self.metrics).await?;
            let args = FeatureShardArgs {
                source: self.source(),
                stores: Arc::new(stores),
                ttl: Duration::from_secs(config.features.cache_ttl_secs),
                max_entries: config.features.cache_max_entries,
                metrics: Arc::clone(self.metrics),
            };
            pools.start("features", args, &local.features.slots).await?;
        }
        if !local.index.held().is_empty() {
            let args = IndexShardArgs {
                indexes: Arc::new(indexes),
                compute: self.compute.clone(),
            };
            pools.start("index", args, &local.index.slots).await?;
        }
        if !local.runs_rankers() {
            return Ok(None);
        }
        let loader = self.start_models().await?;
        let args = RankerArgs {
            models: Arc::clone(loader.models()),
            items: Arc::clone(self.items),
            compute: self.compute.clone(),
        };
        pools.start("ranker", args, &local.ranker).await?;
        Ok(Some(loader))
    }

    /// The catalogue's `mlp.f32` as version 0 of the default model, then one scan of
    /// the repository before serving (off the async workers), then the loader thread.
    async fn start_models(&self) -> anyhow::Result<ModelLoader> {
        let mc = &self.config.models;
        let d = self.plan_defaults();
        let plans = self.ab.plans(&d).into_iter().chain(self.ab.shadow_plan(&d));
        let wanted: Vec<ModelRef> = plans
            .flat_map(|p| std::iter::once(p.model).chain(p.cascade.map(|c| c.first)))
            .chain(self.fallback())
            .collect();
        let models = Arc::new(Models::new(
            Arc::clone(self.items),
            mc.dir.clone(),
            mc.pin.clone(),
            wanted.clone(),
            Arc::clone(self.metrics),
        ));
        models.install(&mc.default, Model::builtin(&mc.default, self.catalogue)?);
        let m = Arc::clone(&models);
        let report = tokio::task::spawn_blocking(move || m.scan()).await?;
        let serving: Vec<&str> = report.serving.iter().map(|s| s.model.as_str()).collect();
        tracing::info!(?serving, refused = report.refused.len(), "models");
        for model in &wanted {
            if let Err(e) = models.get(model) {
                tracing::warn!(%model, error = %e.message, "a model the experiment or the ladder names is not served: its requests answer in ANN order");
            }
        }
        let poll = Duration::from_millis(mc.poll_ms);
        Ok(ModelLoader::spawn(models, poll)?)
    }

    /// The student rung's model (`models.fallback`).
    pub(crate) fn fallback(&self) -> Option<ModelRef> {
        // checked by the config's validation: a name or name@version
        ModelRef::parse(self.config.models.fallback.as_deref()?).ok()
    }

    /// What a variant's plan defaults to.
    pub(crate) fn plan_defaults(&self) -> PlanDefaults {
        PlanDefaults {
            model: self.config.models.default.clone(),
            candidates: self.config.index.candidates,
            shards: self.config.index.shards,
            per_shard_factor: self.config.index.per_shard_factor,
        }
    }
}

/// The endpoint peers call (joining the groups of what this node holds) and the heartbeat.
pub(crate) async fn start_remote(
    data: &DataRoles<'_>,
    peers: &Arc<Peers>,
    membership: &Arc<Membership>,
    replicas: &Arc<NodeReplicas>,
    pools: &mut Pools,
) -> anyhow::Result<Served> {
    let cc = &data.config.cluster;
    let served = Served {
        local: Arc::clone(data.local),
        limits: Limits {
            feature_shards: data.config.features.shards,
            items: crate::stores::id_bound(data.config, data.catalogue),
            max_recent: data.config.features.store.recent_items,
            schema: data.catalogue.schema,
        },
        permits: Arc::new(Semaphore::new(cc.max_served_in_flight)),
        metrics: Arc::clone(data.metrics),
        cluster: Some((Arc::clone(membership), Arc::clone(peers))),
    };
    pools
        .start("endpoint", served.clone(), &PoolSlots::new(1))
        .await?;
    let beat = HeartbeatArgs {
        interval: Duration::from_millis(cc.heartbeat_interval_ms),
        timeout: Duration::from_millis(cc.heartbeat_timeout_ms),
        peers: Arc::clone(peers),
        membership: Arc::clone(membership),
        replicas: Arc::clone(replicas),
        shards: (data.config.index.shards, data.config.features.shards),
        metrics: Arc::clone(data.metrics),
    };
    pools.start("heartbeat", beat, &PoolSlots::new(1)).await?;
    Ok(served)
}

/// Slots of the gateway and the pipeline workers, and the router (writes use it too).
pub(crate) type RequestPath = (
    Arc<PoolSlots<GatewayMessage>>,
    Arc<PoolSlots<PipelineMessage>>,
    Arc<Router>,
);

/// Pipeline workers over a router of `replicas`, then the gateway that feeds them.
pub(crate) async fn start_request_path(
    data: &DataRoles<'_>,
    replicas: &Arc<NodeReplicas>,
    ingress: &IngressState,
    pools: &mut Pools,
) -> anyhow::Result<RequestPath> {
    let config = data.config;
    let shards = ShardCounts {
        features: config.features.shards,
        index: config.index.shards,
    };
    let hedge = config.cluster.hedge_delay_ms.map(Duration::from_millis);
    let router = Arc::new(Router::new(
        Arc::clone(replicas) as _,
        shards,
        hedge,
        Arc::clone(data.metrics),
    ));
    let ttl = config.features.cache_ttl_secs.saturating_mul(1000);
    let settings = PipelineSettings {
        features_timeout: Duration::from_millis(config.features.timeout_ms),
        index_timeout: Duration::from_millis(config.index.timeout_ms),
        ranker_timeout: Duration::from_millis(config.ranker.timeout_ms),
        truncate_to: config.ranker.truncate_to,
        profile_max_age: (config.gateway.lanes.iter())
            .map(|l| Duration::from_millis(l.profile_max_age_ms.unwrap_or(ttl).min(ttl)))
            .collect(),
        lanes: config
            .gateway
            .lanes
            .iter()
            .map(|l| l.name.clone())
            .collect(),
        refuse_early: config.gateway.batching == BatchingMode::Deadline,
    };
    let mut ctx = PipelineCtx::new(
        Arc::clone(&router),
        Arc::clone(data.items),
        data.source(),
        settings,
        data.ab.plans(&data.plan_defaults()),
        Arc::clone(data.metrics),
    );
    let shadow_plan = data.ab.shadow_plan(&data.plan_defaults());
    if let (Some(plan), Some(stats)) = (shadow_plan, &ingress.shadow) {
        ctx.shadow = Some(Shadow::new(plan, Arc::clone(stats)));
    }
    ctx.fallback = data.fallback();
    let pipeline = PoolSlots::new(config.gateway.pipeline_workers);
    pools
        .start("pipeline", PipelineArgs(Arc::new(ctx)), &pipeline)
        .await?;
    let gateway = PoolSlots::new(1);
    let args = GatewayArgs {
        config: config.gateway.clone(),
        workers: Arc::clone(&pipeline),
        metrics: Arc::clone(data.metrics),
        saturation: Arc::clone(&ingress.saturation),
    };
    pools.start("gateway", args, &gateway).await?;
    Ok((gateway, pipeline, router))
}
