//! The `recd_*` Prometheus metrics of one node, in one registry served at `/metrics`.
//!
//! RED per lane and variant, per-stage durations, USE of the gateway (queue depth, wait,
//! batch size, batches in flight) and of the pools (restarts, live actors), the feature
//! cache, shedding and degradation counts.

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics of a node. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by lane, variant and HTTP status.
    pub requests: IntCounterVec,
    /// End-to-end request latency inside the node, by lane.
    pub request_duration: HistogramVec,
    /// Time per pipeline stage (queue, features, ann, rank), per batch.
    pub stage_duration: HistogramVec,
    /// Requests per dispatched micro-batch.
    pub batch_size: Histogram,
    /// Requests waiting in the gateway, by lane.
    pub queue_depth: IntGaugeVec,
    /// Time from enqueue to dispatch, by lane.
    pub queue_wait: HistogramVec,
    /// Batches being processed by the pipeline.
    pub batches_in_flight: IntGauge,
    /// Profile cache hits.
    pub cache_hits: IntCounter,
    /// Profile cache misses (profile derived from the source).
    pub cache_misses: IntCounter,
    /// Requests refused before processing, by lane and reason.
    pub shed: IntCounterVec,
    /// Requests answered with a fallback, by stage.
    pub degraded: IntCounterVec,
    /// Actor restarts, by pool.
    pub actor_restarts: IntCounterVec,
    /// Live actors, by pool.
    pub pool_live: IntGaugeVec,
    /// Items indexed on this node, by shard.
    pub shard_items: IntGaugeVec,
    /// Compute jobs dropped unrun because their deadline passed while queued.
    pub compute_expired: IntCounter,
    /// SLO burn rate by lane and window (1.0 = spending the error budget exactly).
    pub slo_burn_rate: GaugeVec,
    /// Predicted pipeline time of a full batch (the deadline batcher's model).
    pub predicted_batch_seconds: prometheus::Gauge,
    /// Live cluster members this node sees (itself included).
    pub cluster_members: IntGauge,
    /// Calls to other nodes by kind (`features`, `index`, `ranker`, `ping`) and outcome
    /// (`ok`, `error`, `timeout`, `closed`, `malformed`).
    pub remote_calls: IntCounterVec,
    /// Latency of successful calls to other nodes, by kind.
    pub remote_call_duration: HistogramVec,
    /// Second-replica (hedged) calls, by kind.
    pub remote_hedges: IntCounterVec,
    /// Calls this node served for others, by kind and outcome.
    pub remote_served: IntCounterVec,
    /// Peers by name: 1 while answering heartbeats, 0 when down.
    pub peer_up: IntGaugeVec,
    /// Live replicas (this node's, and peers that are up) per shard.
    pub shard_live_replicas: IntGaugeVec,
    /// The placement: 1 for each node a shard is placed on.
    pub shard_placement: IntGaugeVec,
    /// Time of one feature-store commit (a group of write jobs, one fsync).
    pub store_commit_seconds: Histogram,
    /// Writes answered by operation and outcome (applied, duplicate, not_found, refused).
    pub writes: IntCounterVec,
    /// Feature-store reads or writes that failed (the user got the default profile).
    pub store_errors: IntCounter,
    /// From a write's commit on one replica to its invalidation on another.
    pub write_visible_seconds: Histogram,
    /// Model versions tried by the loader, by model and outcome (loaded, refused).
    pub model_loads: IntCounterVec,
    /// The version each model name serves.
    pub model_version: IntGaugeVec,
    /// Rows (candidates) scored, by `name@version`.
    pub model_rows: IntCounterVec,
    /// Time of one scoring call, by `name@version`.
    pub model_score_seconds: HistogramVec,
    /// Request latency inside the node, by experiment variant (RED per variant with
    /// `recd_requests_total`).
    pub variant_duration: HistogramVec,
}

const LATENCY_BUCKETS: (f64, f64, usize) = (0.000_05, 1.6, 20); // 50 µs .. ~26 s

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let (start, factor, count) = LATENCY_BUCKETS;
        let lat = || exponential_buckets(start, factor, count).expect("valid buckets");
        let requests = IntCounterVec::new(
            Opts::new(
                "recd_requests_total",
                "Requests answered by lane, variant and status",
            ),
            &["lane", "variant", "status"],
        )
        .expect("metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "recd_request_duration_seconds",
                "Request latency inside the node",
            )
            .buckets(lat()),
            &["lane"],
        )
        .expect("metric");
        let stage_duration = HistogramVec::new(
            HistogramOpts::new(
                "recd_stage_duration_seconds",
                "Time per pipeline stage per batch",
            )
            .buckets(lat()),
            &["stage"],
        )
        .expect("metric");
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("recd_batch_size", "Requests per micro-batch")
                .buckets(exponential_buckets(1.0, 2.0, 10).expect("valid buckets")),
        )
        .expect("metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "recd_queue_depth",
                "Requests waiting in the gateway by lane",
            ),
            &["lane"],
        )
        .expect("metric");
        let queue_wait = HistogramVec::new(
            HistogramOpts::new("recd_queue_wait_seconds", "Time from enqueue to dispatch")
                .buckets(lat()),
            &["lane"],
        )
        .expect("metric");
        let batches_in_flight =
            IntGauge::new("recd_batches_in_flight", "Batches in the pipeline").expect("metric");
        let cache_hits =
            IntCounter::new("recd_feature_cache_hits_total", "Profile cache hits").expect("metric");
        let cache_misses =
            IntCounter::new("recd_feature_cache_misses_total", "Profile cache misses")
                .expect("metric");
        let shed = IntCounterVec::new(
            Opts::new(
                "recd_shed_total",
                "Requests refused before processing by lane and reason",
            ),
            &["lane", "reason"],
        )
        .expect("metric");
        let degraded = IntCounterVec::new(
            Opts::new(
                "recd_degraded_total",
                "Requests answered with a fallback by stage",
            ),
            &["stage"],
        )
        .expect("metric");
        let actor_restarts = IntCounterVec::new(
            Opts::new("recd_actor_restarts_total", "Actor restarts by pool"),
            &["pool"],
        )
        .expect("metric");
        let pool_live = IntGaugeVec::new(
            Opts::new("recd_pool_live_actors", "Live actors by pool"),
            &["pool"],
        )
        .expect("metric");
        let shard_items = IntGaugeVec::new(
            Opts::new(
                "recd_index_shard_items",
                "Items indexed by shard on this node",
            ),
            &["shard"],
        )
        .expect("metric");
        let compute_expired = IntCounter::new(
            "recd_compute_expired_total",
            "Compute jobs dropped unrun because their deadline passed while queued",
        )
        .expect("metric");
        let slo_burn_rate = GaugeVec::new(
            Opts::new(
                "recd_slo_burn_rate",
                "Error-budget burn rate by lane and window",
            ),
            &["lane", "window"],
        )
        .expect("metric");
        let predicted_batch_seconds = prometheus::Gauge::new(
            "recd_predicted_batch_seconds",
            "Predicted pipeline time of a full micro-batch",
        )
        .expect("metric");
        let cluster_members = IntGauge::new(
            "recd_cluster_members",
            "Live cluster members seen by this node",
        )
        .expect("metric");
        let remote_calls = IntCounterVec::new(
            Opts::new("recd_remote_calls_total", "Calls to other nodes"),
            &["kind", "outcome"],
        )
        .expect("metric");
        let remote_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "recd_remote_call_seconds",
                "Latency of successful calls to other nodes",
            )
            .buckets(lat()),
            &["kind"],
        )
        .expect("metric");
        let remote_hedges = IntCounterVec::new(
            Opts::new(
                "recd_remote_hedges_total",
                "Calls hedged to a second replica",
            ),
            &["kind"],
        )
        .expect("metric");
        let remote_served = IntCounterVec::new(
            Opts::new("recd_remote_served_total", "Calls served for other nodes"),
            &["kind", "outcome"],
        )
        .expect("metric");
        let peer_up = IntGaugeVec::new(
            Opts::new("recd_peer_up", "1 while the peer answers heartbeats"),
            &["peer"],
        )
        .expect("metric");
        let shard_live_replicas = IntGaugeVec::new(
            Opts::new("recd_shard_live_replicas", "Live replicas per shard"),
            &["kind", "shard"],
        )
        .expect("metric");
        let shard_placement = IntGaugeVec::new(
            Opts::new(
                "recd_shard_placement",
                "1 for each node a shard is placed on",
            ),
            &["kind", "shard", "node"],
        )
        .expect("metric");
        let store_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "recd_store_commit_seconds",
                "Feature store commit time (one group commit)",
            )
            .buckets(lat()),
        )
        .expect("metric");
        let writes = IntCounterVec::new(
            Opts::new("recd_writes_total", "Writes by operation and outcome"),
            &["op", "outcome"],
        )
        .expect("metric");
        let store_errors = IntCounter::new(
            "recd_store_errors_total",
            "Feature store reads or writes that failed",
        )
        .expect("metric");
        let write_visible_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "recd_write_visible_seconds",
                "Time from a write's commit to its visibility on another replica",
            )
            .buckets(lat()),
        )
        .expect("metric");
        let model_loads = IntCounterVec::new(
            Opts::new("recd_model_loads_total", "Model versions tried, by outcome"),
            &["model", "outcome"],
        )
        .expect("metric");
        let model_version = IntGaugeVec::new(
            Opts::new("recd_model_version", "The version each model name serves"),
            &["model"],
        )
        .expect("metric");
        let model_rows = IntCounterVec::new(
            Opts::new(
                "recd_model_rows_total",
                "Candidates scored, by model version",
            ),
            &["model"],
        )
        .expect("metric");
        let model_score_seconds = HistogramVec::new(
            HistogramOpts::new("recd_model_score_seconds", "Scoring call time by model")
                .buckets(lat()),
            &["model"],
        )
        .expect("metric");
        let variant_duration = HistogramVec::new(
            HistogramOpts::new(
                "recd_variant_request_duration_seconds",
                "Request latency inside the node, by experiment variant",
            )
            .buckets(lat()),
            &["variant"],
        )
        .expect("metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(stage_duration.clone()),
            Box::new(batch_size.clone()),
            Box::new(queue_depth.clone()),
            Box::new(queue_wait.clone()),
            Box::new(batches_in_flight.clone()),
            Box::new(cache_hits.clone()),
            Box::new(cache_misses.clone()),
            Box::new(shed.clone()),
            Box::new(degraded.clone()),
            Box::new(actor_restarts.clone()),
            Box::new(pool_live.clone()),
            Box::new(shard_items.clone()),
            Box::new(compute_expired.clone()),
            Box::new(slo_burn_rate.clone()),
            Box::new(predicted_batch_seconds.clone()),
            Box::new(cluster_members.clone()),
            Box::new(remote_calls.clone()),
            Box::new(remote_call_duration.clone()),
            Box::new(remote_hedges.clone()),
            Box::new(remote_served.clone()),
            Box::new(peer_up.clone()),
            Box::new(shard_live_replicas.clone()),
            Box::new(shard_placement.clone()),
            Box::new(store_commit_seconds.clone()),
            Box::new(writes.clone()),
            Box::new(store_errors.clone()),
            Box::new(write_visible_seconds.clone()),
            Box::new(model_loads.clone()),
            Box::new(model_version.clone()),
            Box::new(model_rows.clone()),
            Box::new(model_score_seconds.clone()),
            Box::new(variant_duration.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            requests,
            request_duration,
            stage_duration,
            batch_size,
            queue_depth,
            queue_wait,
            batches_in_flight,
            cache_hits,
            cache_misses,
            shed,
            degraded,
            actor_restarts,
            pool_live,
            shard_items,
            compute_expired,
            slo_burn_rate,
            predicted_batch_seconds,
            cluster_members,
            remote_calls,
            remote_call_duration,
            remote_hedges,
            remote_served,
            peer_up,
            shard_live_replicas,
            shard_placement,
            store_commit_seconds,
            writes,
            store_errors,
            write_visible_seconds,
            model_loads,
            model_version,
            model_rows,
            model_score_seconds,
            variant_duration,
        }
    }

    /// Registers a collector of another module's (one registry serves `/metrics`).
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is utf-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_metrics() {
        let m = Metrics::new();
        m.requests.with_label_values(&["default", "A", "200"]).inc();
        m.actor_restarts.with_label_values(&["ranker"]).inc();
        let text = m.encode();
        assert!(
            text.contains("recd_requests_total{lane=\"default\",status=\"200\",variant=\"A\"} 1"),
            "{text}"
        );
        assert!(text.contains("recd_actor_restarts_total{pool=\"ranker\"} 1"));
    }
}
