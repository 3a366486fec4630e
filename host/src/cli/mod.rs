//! Command-line interface: parse arguments and dispatch to a subcommand.

mod audit;
mod canary;
mod check;
mod client;
mod decisions;
mod deploy;
mod migrate;
mod new;
mod replay;
mod revisits;
mod rollback;
mod run;
mod serve;
mod simulate;
mod telemetry;
mod versions;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// `kefu --version`: the crate version, the git commit built and its date.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KEFU_GIT_COMMIT"),
    ", ",
    env!("KEFU_COMMIT_DATE"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "kefu",
    version = VERSION,
    about = "WebAssembly plugin host for shops' customer-service workflows"
)]
struct Cli {
    /// Log lines as text (the default) or one JSON object each.
    #[arg(long, global = true, env = "KEFU_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run one plugin call locally and print the output as JSON.
    Run(run::RunArgs),
    /// Say which step world a component implements, or why it implements none.
    Check(check::CheckArgs),
    /// Serve the HTTP API for a directory of shops.
    Serve(serve::ServeArgs),
    /// Create a plugin project (Rust, Python or JavaScript) for a step.
    New(new::NewArgs),
    /// Deploy a plugin and/or its config to a running server.
    Deploy(deploy::DeployArgs),
    /// List a step's versions on a running server.
    Versions(versions::VersionsArgs),
    /// Make an earlier version active again.
    Rollback(rollback::RollbackArgs),
    /// Show, start, change, promote or abort a step's canary.
    Canary(canary::CanaryArgs),
    /// Read a shop's decision log.
    Decisions(decisions::DecisionsArgs),
    /// List a shop's revisits.
    Revisits(revisits::RevisitsArgs),
    /// Read the deploy audit.
    Audit(audit::AuditArgs),
    /// What a candidate would have decided on a shop step's logged
    /// decisions (a data directory no server is using).
    Replay(replay::ReplayArgs),
    /// Copy a stopped server's sled data into an empty NATS store (to
    /// serve it from several nodes: docs/scale-out.md).
    Migrate(migrate::MigrateArgs),
    /// Run an event stream through a shop folder on a virtual clock and
    /// print what happened to each order and customer.
    Simulate(simulate::SimulateArgs),
    /// Print a shell completion script: `kefu completions bash >
    /// ~/.local/share/bash-completion/completions/kefu` (or zsh, fish,
    /// elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

pub fn main() -> ExitCode {
    // A compile worker (`kefu __compile LIMITS`), started by `kefu serve`.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(kefu::runtime_compile_worker_arg()) {
        let _telemetry = telemetry::init(LogFormat::Text, "info", false);
        return kefu::runtime_compile_worker_main(
            args.get(2).map_or("{}", String::as_str),
            args.get(3).map(String::as_str),
            args.get(4).map(String::as_str),
        );
    }
    let cli = Cli::parse();
    // A simulation prints its own report: its scratch server's loading is
    // noise there unless asked for.
    let quiet = matches!(cli.command, Command::Simulate(_));
    // Spans are exported by the server only.
    let serving = matches!(cli.command, Command::Serve(_));
    let _telemetry = telemetry::init(cli.log_format, if quiet { "warn" } else { "info" }, serving);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Check(args) => check::check(args),
        Command::Serve(args) => serve::run(args),
        Command::New(args) => new::run(args),
        Command::Deploy(args) => Ok(deploy::run(args)),
        Command::Versions(args) => Ok(versions::run(args)),
        Command::Rollback(args) => Ok(rollback::run(args)),
        Command::Canary(args) => Ok(canary::run(args)),
        Command::Decisions(args) => Ok(decisions::run(args)),
        Command::Revisits(args) => Ok(revisits::run(args)),
        Command::Audit(args) => Ok(audit::run(args)),
        Command::Replay(args) => replay::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "kefu", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", said_once(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes, each said once: a cause whose text the
/// message already holds (`cannot open X: <cause>`) is not repeated.
fn said_once(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// Where compiled plugins are cached by default: `$KEFU_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kefu/compiled`, else `~/.cache/kefu/compiled`.
pub fn default_cache_dir() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("KEFU_CACHE_DIR") {
        return Some(dir.into());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))?;
    Some(base.join("kefu").join("compiled"))
}
