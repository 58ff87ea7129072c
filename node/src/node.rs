//! Bringing one node's roles up and down (see the crate docs for the order). `Node::start`
//! reads as the order itself; each role's pools are started in [`roles`].

use crate::roles::{self, Pools};
use anyhow::Context;
use ractor::{Actor, ActorRef};
use recd_actors::candidates::ann::SharedIndex;
use recd_actors::candidates::open;
use recd_actors::data::Catalogue;
use recd_actors::experiments::shadow::ShadowStats;
use recd_actors::experiments::AbScenarios;
use recd_actors::ingress::state::{ClusterView, IngressState, Serving};
use recd_actors::ingress::{IngressArgs, IngressFactory};
use recd_actors::remote::endpoint::Served;
use recd_actors::remote::peer::PeerNet;
use recd_actors::remote::replicas::NodeReplicas;
use recd_actors::stage::local::{LocalShards, LocalStages};
use recd_runtime::cluster::{Cluster, Membership};
use recd_runtime::config::{Config, Role};
use recd_runtime::lanes::LaneSaturation;
use recd_runtime::metrics::Metrics;
use recd_runtime::peers::Peers;
use recd_runtime::placement::{Placement, ShardKind};
use recd_runtime::pool::root::{Health, RootMessage, RootSupervisor};
use recd_runtime::pool::{PoolMessage, PoolSlots};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// A running node.
pub struct Node {
    /// Where HTTP is served.
    pub http_addr: SocketAddr,
    /// Where the admin surface is served (`None`: no admin token).
    pub admin_addr: Option<SocketAddr>,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    root: ActorRef<RootMessage>,
    health: Arc<Health>,
    /// The ingress's pool supervisor.
    ingress: ActorRef<PoolMessage>,
    /// The cluster endpoint, when this node runs in a cluster.
    cluster: Option<Cluster>,
    pools: Pools,
    ingress_state: Arc<IngressState>,
    /// The endpoint's state (its in-flight count), when this node runs in a cluster.
    served: Option<Served>,
    me: String,
    max_served: usize,
    grace: Duration,
}

/// This node's place in the cluster: who is alive, how peers are doing, which shards
/// are placed where.
struct Topology {
    cluster: Option<Cluster>,
    membership: Arc<Membership>,
    peers: Arc<Peers>,
    placement: Placement,
}

impl Node {
    /// Starts every role of `config` and returns once the node is ready.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new());
        let health = Health::new();
        let (root, _) = Actor::spawn(None, RootSupervisor, Arc::clone(&health)).await?;
        let topo = join_cluster(&config, &metrics).await?;
        let local = Arc::new(local_stages(&config, &topo.placement));
        let net = topo.cluster.as_ref().map(|_| {
            Arc::new(PeerNet {
                peers: Arc::clone(&topo.peers),
                catalogue: OnceLock::new(),
                metrics: Arc::clone(&metrics),
            })
        });
        let replicas = Arc::new(NodeReplicas::new(
            Arc::clone(&local),
            net.clone(),
            Arc::clone(&topo.membership),
        ));
        let mut pools = Pools::new(
            root.clone(),
            Arc::clone(&health),
            &config,
            Arc::clone(&metrics),
        );
        let (ingress, ingress_state, (http_addr, admin_addr)) =
            start_ingress(&config, &topo, &replicas, &pools).await?;

        let (catalogue, indexes) = {
            let (config, held) = (config.clone(), local.index.held().to_vec());
            tokio::task::spawn_blocking(move || load_data(&config, &held)).await??
        };
        let held = local.index.held().to_vec();
        let (items, item_writes) =
            crate::stores::open_items(&config, &catalogue, &indexes, &held, &metrics).await?;
        // replies from peers carry item ids and vectors: the catalogue is their bound
        if let Some(net) = &net {
            let bound = crate::stores::id_bound(&config, &catalogue);
            let _ = net.catalogue.set((bound, catalogue.schema));
        }
        let data = roles::DataRoles {
            config: &config,
            catalogue: &catalogue,
            items: &items,
            local: &local,
            metrics: &metrics,
            compute: roles::DataRoles::compute(&config, &metrics),
            ab: &ingress_state.ab,
        };
        let models = data.start(&mut pools, indexes).await?;
        let served = match topo.cluster {
            Some(_) => Some(
                roles::start_remote(&data, &topo.peers, &topo.membership, &replicas, &mut pools)
                    .await?,
            ),
            None => None,
        };
        let takes_requests = config.cluster.has_role(Role::Ingress);
        let (gateway, pipeline, router) = if takes_requests {
            let (g, p, r) =
                roles::start_request_path(&data, &replicas, &ingress_state, &mut pools).await?;
            (g, p, Some(r))
        } else {
            (PoolSlots::new(0), PoolSlots::new(0), None)
        };
        let serving = Serving {
            takes_requests,
            gateway,
            pipeline,
            local,
            router,
            items,
            item_writes,
            models,
        };
        if ingress_state.serving.set(serving).is_err() {
            anyhow::bail!("node started twice");
        }
        tracing::info!(%http_addr, "ready");
        Ok(Self {
            http_addr,
            admin_addr,
            metrics,
            root,
            health,
            ingress,
            cluster: topo.cluster,
            pools,
            ingress_state,
            served,
            me: config.cluster.node_name.clone(),
            max_served: config.cluster.max_served_in_flight,
            grace: Duration::from_millis(config.node.drain_grace_ms),
        })
    }

    /// Drains and stops the node: not ready and new work refused (503, `Retry-After`);
    /// peers told to route around it; requests in flight here and calls peers began
    /// before they heard finish (within `node.drain_grace_ms`); then HTTP, gateway,
    /// pipeline, remote and shard pools stop (the reverse of their start), and the node
    /// leaves the cluster.
    pub async fn shutdown(self) {
        let started = std::time::Instant::now();
        self.health.stopping();
        self.ingress_state.draining.store(true, Ordering::SeqCst);
        tracing::info!("draining: not ready, new work refused");
        if self.cluster.is_some() {
            let told = recd_actors::remote::leave::announce(&self.me, Duration::from_secs(1)).await;
            tracing::info!(peers = told, "told the peers this node is leaving");
        }
        let st = &self.ingress_state;
        let served = |s: &Option<Served>| s.as_ref().map_or(0, |s| s.in_flight(self.max_served));
        while started.elapsed() < self.grace
            && (st.in_flight.load(Ordering::SeqCst) > 0 || served(&self.served) > 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::info!(
            drained_ms = started.elapsed().as_millis() as u64,
            left_in_flight = st.in_flight.load(Ordering::SeqCst) + served(&self.served),
            "drained"
        );
        let wait = Some(Duration::from_secs(15));
        // the supervisor waits for its ingress's HTTP drain
        let _ = self.ingress.stop_and_wait(None, wait).await;
        self.pools.stop(wait).await;
        let _ = self.root.stop_and_wait(None, wait).await;
        if let Some(cluster) = self.cluster {
            cluster.stop().await;
        }
    }
}

/// The cluster endpoint (when `cluster.listen` is set), membership, peers, placement.
async fn join_cluster(config: &Config, metrics: &Metrics) -> anyhow::Result<Topology> {
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
    Ok(Topology {
        cluster,
        membership,
        peers,
        placement,
    })
}

/// Empty slots for the shards placed here and the rankers of this node's roles.
fn local_stages(config: &Config, placement: &Placement) -> LocalStages {
    let cc = &config.cluster;
    let held = |kind, role| match cc.has_role(role) {
        true => placement.shards_of(kind, &cc.node_name),
        false => Vec::new(),
    };
    let features = LocalShards::new(
        held(ShardKind::Features, Role::Features),
        config.features.shards,
    );
    let index = LocalShards::new(held(ShardKind::Index, Role::Index), config.index.shards);
    let rankers = if cc.has_role(Role::Ranker) {
        config.ranker.workers
    } else {
        0
    };
    tracing::info!(index = ?index.held(), features = ?features.held(), rankers, "placement");
    LocalStages::new(features, index, PoolSlots::new(rankers))
}

/// The HTTP listener first, so `/healthz` answers and `/readyz` says 503 while loading:
/// the sockets bound here, the ingress a supervised pool of one on them.
async fn start_ingress(
    config: &Config,
    topo: &Topology,
    replicas: &Arc<NodeReplicas>,
    pools: &Pools,
) -> anyhow::Result<(
    ActorRef<PoolMessage>,
    Arc<IngressState>,
    (SocketAddr, Option<SocketAddr>),
)> {
    let (metrics, health) = (&pools.metrics, &pools.health);
    let ab = match &config.experiments.scenarios_file {
        Some(p) => AbScenarios::load(p)?,
        None => AbScenarios::default(),
    };
    let listen: SocketAddr = config
        .node
        .http_listen
        .parse()
        .context("node.http_listen")?;
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|r| config.cluster.has_role(*r))
        .collect();
    let view = ClusterView {
        membership: Arc::clone(&topo.membership),
        peers: Arc::clone(&topo.peers),
        placement: topo.placement.clone(),
        replicas: Arc::clone(replicas),
        roles,
        covered: AtomicBool::new(false),
    };
    let saturation = Arc::new(LaneSaturation::new(config.gateway.lanes.len()));
    let shadow = match ab.experiment.shadow {
        Some(_) => Some(Arc::new(ShadowStats::new(metrics)?)),
        None => None,
    };
    let state = Arc::new(IngressState::new(
        config,
        (ab, shadow),
        Arc::clone(metrics),
        saturation,
        view,
        Arc::clone(health),
    )?);
    let admin_listen = match config.admin.token.is_empty() {
        true => None,
        false => Some(config.admin.listen.parse().context("admin.listen")?),
    };
    let args = IngressArgs::bind(listen, admin_listen, Arc::clone(&state))
        .await
        .with_context(|| format!("binding {listen} (and admin.listen)"))?;
    let addrs = (args.addr()?, args.admin_addr()?);
    let sup = pools
        .spawn("ingress", IngressFactory(args), &state.ingress)
        .await?;
    Ok((sup, state, addrs))
}

/// Generates the catalogue if the data folder is empty (and allowed), loads it, and
/// loads or builds the index shards placed on this node (`held`). Blocking.
fn load_data(
    config: &Config,
    held: &[usize],
) -> anyhow::Result<(Arc<Catalogue>, Vec<SharedIndex>)> {
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
    let mut indexes = Vec::with_capacity(held.len());
    for &s in held {
        let started = std::time::Instant::now();
        let progress =
            |done: usize, total: usize| tracing::info!(shard = s, done, total, "indexing");
        let (idx, loaded) = open::load_or_build(
            &dir.join("index"),
            &catalogue,
            (s, config.index.shards),
            &config.index,
            (
                config.compute.threads.max(cores),
                config.index_build_threads(),
            ),
            &progress,
        )?;
        tracing::info!(
            shard = s,
            items = idx.len(),
            backend = idx.backend(),
            loaded,
            seconds = started.elapsed().as_secs_f64(),
            "index shard ready"
        );
        indexes.push(idx);
    }
    Ok((catalogue, indexes))
}
