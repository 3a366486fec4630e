//! `kefu serve`: the HTTP server on a shops directory.

use anyhow::{Context, Result};
use clap::Args;
use kefu::app::ServerConfig;
use kefu::server::serve;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ServeArgs {
    /// The server config (TOML). `KEFU_<SETTING>` environment variables
    /// override it (`KEFU_LISTEN`, `KEFU_DATA_DIR`,
    /// `KEFU_HTTP__MAX_CONNECTIONS`...), and the flags below override
    /// both.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8080).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Folder with one sub-folder per shop.
    #[arg(long)]
    shops: Option<PathBuf>,
    /// Data directory (sled).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Refuse to start when any shop or step fails to load, instead of
    /// starting it degraded on its stored versions.
    #[arg(long)]
    strict: bool,
}

pub fn run(args: ServeArgs) -> Result<ExitCode> {
    let mut config = ServerConfig::layered(args.config.as_deref(), std::env::vars())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(shops) = args.shops {
        config.shops_dir = shops;
    }
    if let Some(data) = args.data {
        config.data_dir = data;
    }
    config.strict |= args.strict;
    // Compile in worker processes of this same executable.
    config.compile_worker = std::env::current_exe().ok();
    // Reused-instance calls (Python, JavaScript), compiling deployed
    // components and pruning the log run on the blocking pool: a few
    // threads per core keep them busy without hundreds of threads trading
    // the CPU. Other calls run on the async workers or the slow lane.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(cores * 4)
        .build()
        .context("start tokio")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}
