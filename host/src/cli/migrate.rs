//! `kefu migrate --from sled:DIR --to nats://HOST:PORT [--prefix P]`:
//! copy a single node's data (shops, versions and components, plugin
//! state, the decision log, revisits, the outbox, the workflow's events,
//! the audit) into an empty NATS store, so that a shop moves to several
//! nodes with its history (docs/scale-out.md). The server must be
//! stopped: sled locks its directory.

use anyhow::{Context, bail};
use clap::Args;
use kefu::{NatsOptions, NatsStorage, SledStorage};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct MigrateArgs {
    /// The source: `sled:DIR`, the `data_dir` of a stopped server.
    #[arg(long)]
    from: String,
    /// The destination: a NATS URL (`nats://127.0.0.1:4222`).
    #[arg(long)]
    to: String,
    /// The prefix the nodes will use (`[storage] prefix`); it must hold
    /// no kefu data yet.
    #[arg(long, default_value = "kefu")]
    prefix: String,
    /// A NATS credentials file, if NATS wants one.
    #[arg(long)]
    credentials: Option<PathBuf>,
}

pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let Some(dir) = args.from.strip_prefix("sled:") else {
        bail!(
            "--from {}: expected sled:DIR (a stopped server's data_dir)",
            args.from
        );
    };
    if !args.to.starts_with("nats://") && !args.to.starts_with("tls://") {
        bail!("--to {}: expected a NATS URL, nats://HOST:PORT", args.to);
    }
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        bail!("--from: {} is not a directory", dir.display());
    }
    let source = SledStorage::open(&dir).with_context(|| {
        format!(
            "cannot open {} (is a server still using it?)",
            dir.display()
        )
    })?;
    // The copy is written through a node of its own, whose view is
    // thrown away afterwards.
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let nats = NatsStorage::open(NatsOptions {
        url: args.to.clone(),
        prefix: args.prefix.clone(),
        credentials: args.credentials.clone(),
        token: std::env::var("KEFU_NATS_TOKEN").ok(),
        view_dir: scratch.path().join("view"),
        cache_bytes: 16 << 20,
        state_quota: 0,
        node: format!("migrate-{}", std::process::id()),
    })
    .with_context(|| format!("cannot open NATS at {}", args.to))?;
    let migrated = nats
        .migrate_from(&source, &mut |n| eprint!("\rcopied {n} records"))
        .context("the copy failed")?;
    eprintln!();
    println!(
        "copied {} components and {} records from {} into NATS at {} (prefix {}):",
        migrated.components,
        migrated.records.values().sum::<u64>(),
        dir.display(),
        args.to,
        args.prefix
    );
    for (kind, n) in &migrated.records {
        println!("  {kind:<18} {n}");
    }
    Ok(ExitCode::SUCCESS)
}
