//! `recd-node`: run a node, generate a catalogue or certificates, or benchmark.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "recd-node",
    version,
    about = "recd: real-time recommendation inference node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags that override the config file (env `RECD__SECTION__KEY` overrides both).
#[derive(clap::Args)]
struct ConfigFlags {
    /// YAML config file (configs/dev.yaml, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder with the catalogue and index snapshots (node.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP listen address (node.http_listen).
    #[arg(long)]
    http_listen: Option<String>,
    /// This node's name in the cluster (cluster.node_name).
    #[arg(long)]
    node_name: Option<String>,
    /// Cluster listen address; joins a cluster when set (cluster.listen).
    #[arg(long)]
    cluster_listen: Option<String>,
    /// Comma-separated seeds host:port (cluster.seeds).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve recommendations until SIGINT/SIGTERM.
    Run(ConfigFlags),
    /// Write a seeded synthetic catalogue in the workload file format.
    GenData {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Number of items.
        #[arg(long, default_value_t = 200_000)]
        items: usize,
        /// RNG seed.
        #[arg(long, default_value_t = 20240611)]
        seed: u64,
        /// Embedding dimensions (2..=4096).
        #[arg(long, default_value_t = 64)]
        dim: usize,
        /// Dense features per user and item (0..=1024).
        #[arg(long, default_value_t = 16)]
        feat_dim: usize,
    },
    /// GET a URL on this host and exit 0 on a 2xx answer (a container HEALTHCHECK that
    /// needs no shell or curl in the image).
    Probe {
        /// `http://host:port/path`.
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// Give up after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
    /// Bulk-load user profiles into the configured feature store, or items into the item
    /// writes (embedded: no node may hold its files; redis: nodes may be serving).
    /// Parquet file or raw folder.
    Import {
        /// What to import.
        #[arg(value_parser = ["users", "items"])]
        what: String,
        /// users: a Parquet file (user_id, embedding, features?, recent_items?) or a folder
        /// with user_ids.txt, users.f32 and optionally user_feats.f32. items: a Parquet
        /// file (item_id, embedding, features?) or a folder with item_ids.u64, items.f32
        /// and optionally item_feats.f32.
        #[arg(long)]
        from: PathBuf,
        #[command(flatten)]
        flags: ConfigFlags,
    },
    /// Write a cluster CA and a certificate per node for mutual TLS on the cluster port
    /// (development and tests; cert-manager in Kubernetes).
    GenCerts {
        /// Output folder: ca.pem, ca-key.pem, <node>.pem, <node>-key.pem.
        #[arg(long)]
        out: PathBuf,
        /// A node name (repeat); it is a SAN of its certificate.
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// A further SAN of every node's certificate: a host name or IP (repeat).
        #[arg(long = "san")]
        sans: Vec<String>,
    },
    /// Measure the in-process kernel (no HTTP, no actors) on every core; prints JSON.
    BenchKernel {
        #[command(flatten)]
        flags: ConfigFlags,
        /// Requests to time.
        #[arg(long, default_value_t = 5000)]
        requests: usize,
        /// Queries for the recall measurement against brute force.
        #[arg(long, default_value_t = 100)]
        recall_queries: usize,
        /// Threads running the kernel at once (0 = one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Measure models on one thread: µs per request for the catalogue's teacher and
    /// each version folder given, top-10 agreement with the teacher, and each as the
    /// first stage of a cascade; prints JSON.
    BenchModel {
        /// The catalogue folder.
        #[arg(long)]
        data_dir: PathBuf,
        /// Version folders (`<repo>/<name>/<version>`) to measure beside the teacher.
        #[arg(long = "model")]
        models: Vec<PathBuf>,
        /// Users (agreement is their mean).
        #[arg(long, default_value_t = 200)]
        users: usize,
        /// Candidates per request (their exact top by inner product).
        #[arg(long, default_value_t = 200)]
        candidates: usize,
        /// Timed calls per model.
        #[arg(long, default_value_t = 2000)]
        calls: usize,
        /// Candidates the teacher re-ranks in a cascade.
        #[arg(long, default_value_t = 50)]
        rerank: usize,
    },
}

fn load_config(flags: &ConfigFlags) -> anyhow::Result<recd_runtime::config::Config> {
    let mut overrides = Vec::new();
    if let Some(d) = &flags.data_dir {
        overrides.push(("node.data_dir".to_string(), d.display().to_string()));
    }
    if let Some(a) = &flags.http_listen {
        overrides.push(("node.http_listen".to_string(), a.clone()));
    }
    if let Some(n) = &flags.node_name {
        overrides.push(("cluster.node_name".to_string(), n.clone()));
    }
    if let Some(l) = &flags.cluster_listen {
        overrides.push(("cluster.listen".to_string(), l.clone()));
    }
    if !flags.seeds.is_empty() {
        overrides.push((
            "cluster.seeds".to_string(),
            format!("[{}]", flags.seeds.join(", ")),
        ));
    }
    recd_runtime::config::load(flags.config.as_deref(), &overrides, std::env::vars())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::GenData {
            out,
            items,
            seed,
            dim,
            feat_dim,
        } => {
            let schema = recd_actors::data::Schema { dim, feat_dim };
            recd_node::commands::gen_data(&out, items, seed, schema)
        }
        Command::GenCerts { out, nodes, sans } => recd_node::certs::gen_certs(&out, &nodes, &sans),
        Command::Probe { url, timeout_ms } => {
            let status = recd_node::commands::probe(&url, Duration::from_millis(timeout_ms))?;
            anyhow::ensure!((200..300).contains(&status), "{url} answered {status}");
            Ok(())
        }
        Command::BenchKernel {
            flags,
            requests,
            recall_queries,
            threads,
        } => {
            let config = load_config(&flags)?;
            recd_runtime::telemetry::init_logging("text");
            let report =
                recd_node::commands::bench_kernel(&config, requests, recall_queries, threads, 7)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::BenchModel {
            data_dir,
            models,
            users,
            candidates,
            calls,
            rerank,
        } => {
            let sizes = (
                users.max(1),
                candidates.max(10),
                calls.max(1),
                rerank.max(10),
            );
            let report = recd_node::bench_model::bench_model(&data_dir, &models, sizes)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        Command::Import { what, from, flags } => {
            let config = load_config(&flags)?;
            recd_runtime::telemetry::init_logging("text");
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            match what.as_str() {
                "items" => runtime.block_on(recd_node::import_items::items(&config, &from)),
                _ => runtime.block_on(recd_node::import::users(&config, &from)),
            }
        }
        Command::Run(flags) => {
            let config = load_config(&flags)?;
            recd_runtime::telemetry::init_logging(&config.node.log_format);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(recd_node::run(config, shutdown_signal()))
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
