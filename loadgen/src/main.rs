//! `recd-loadgen`: see `recd_loadgen` for what each mode measures.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let args = recd_loadgen::cli::Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    runtime.block_on(recd_loadgen::run(args))
}
