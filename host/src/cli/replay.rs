//! `kefu replay --data DIR --shop S --step STEP --candidate FILE.wasm
//! [--config FILE] [--since MS] [--until MS] [--limit N] [--json]`: what
//! a candidate would have decided on a shop step's logged decisions, read
//! from a data directory. A running server holds its data directory (sled
//! locks it): then the replay runs through that server's API (the
//! directory says where it answers), as with `--server URL`.

use super::client::{Body, Connection, Needs, table};
use anyhow::{Context, bail};
use clap::Args;
use kefu::app::{ReplayDirError, ReplayFilters, ReplayProgress, ReplayReport, replay_dir};
use kefu::{Runtime, RuntimeConfig, Step, StorageError};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

#[derive(Args)]
pub struct ReplayArgs {
    /// The data directory (`data_dir` of the server's config).
    #[arg(long, required_unless_present = "server")]
    data: Option<PathBuf>,
    /// Replay through this running server's API instead (admin token in
    /// `--admin-token` or `KEFU_ADMIN_TOKEN`).
    #[arg(long, conflicts_with = "data")]
    server: Option<String>,
    /// The admin token, for a replay through a server's API.
    #[arg(long, env = "KEFU_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    #[arg(long)]
    shop: String,
    #[arg(long)]
    step: String,
    /// The component to replay.
    #[arg(long)]
    candidate: PathBuf,
    /// Its config (.toml or .json); default: each decision's version's.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Decisions logged at or after this time (unix ms).
    #[arg(long)]
    since: Option<i64>,
    /// ...and before this one.
    #[arg(long)]
    until: Option<i64>,
    /// At most this many (the oldest first).
    #[arg(long)]
    limit: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let step: Step = args.step.parse()?;
    let component = kefu::read_plugin(&args.candidate)?;
    let report = match (&args.server, &args.data) {
        (Some(server), _) => through_server(server, &args, &component)?,
        (None, Some(data)) => match locally(data, step, &args, &component) {
            Err(
                held @ ReplayDirError::Open {
                    cause: StorageError::Locked(_),
                    ..
                },
            ) => {
                let Some(url) = kefu::server::serving_url(data) else {
                    return Err(held.into());
                };
                eprintln!(
                    "{} is held by the kefu serving {url}: replaying through its API",
                    data.display()
                );
                through_server(&url, &args, &component)?
            }
            other => other?,
        },
        (None, None) => bail!("give --data DIR or --server URL"),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// Open the data directory and replay in this process.
fn locally(
    data: &std::path::Path,
    step: Step,
    args: &ReplayArgs,
    component: &[u8],
) -> Result<ReplayReport, ReplayDirError> {
    let config = args
        .config
        .as_deref()
        .map(kefu::app::config::read_plugin_config)
        .transpose()
        .map_err(|e| ReplayDirError::Config(e.to_string()))?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: super::default_cache_dir(),
        limits: Default::default(),
        compile_worker: None,
    })
    .map_err(|e| ReplayDirError::Config(format!("cannot start the plugin runtime: {e}")))?;
    let filters = ReplayFilters {
        since_ms: args.since,
        until_ms: args.until,
        limit: args.limit,
    };
    let progress = ReplayProgress::default();
    std::thread::scope(|scope| {
        let work = scope.spawn(|| {
            replay_dir(
                data,
                &runtime,
                &args.shop,
                step,
                component,
                config.clone(),
                &filters,
                &progress,
            )
        });
        let bar = Bar::new();
        while !work.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(500));
            bar.show(
                progress.done.load(Ordering::Relaxed),
                progress.total.load(Ordering::Relaxed),
            );
        }
        bar.end();
        work.join().expect("the replay thread does not panic")
    })
}

/// Start the replay on a server (`POST .../replays`), follow it, and take
/// its report.
fn through_server(
    server: &str,
    args: &ReplayArgs,
    component: &[u8],
) -> anyhow::Result<ReplayReport> {
    let conn = Connection::admin(server, args.admin_token.clone());
    let mut parts = vec![(
        "component",
        "candidate.wasm",
        "application/wasm",
        component.to_vec(),
    )];
    if let Some(config) = &args.config {
        let bytes = std::fs::read(config).with_context(|| config.display().to_string())?;
        let json = config.extension().is_some_and(|e| e == "json");
        let (name, kind) = if json {
            ("config.json", "application/json")
        } else {
            ("config.toml", "application/toml")
        };
        parts.push(("config", name, kind, bytes));
    }
    let mut query = Vec::new();
    for (key, value) in [
        ("since", args.since.map(|v| v.to_string())),
        ("until", args.until.map(|v| v.to_string())),
        ("limit", args.limit.map(|v| v.to_string())),
    ] {
        if let Some(value) = value {
            query.push(format!("{key}={value}"));
        }
    }
    let failed = |f: super::client::Failure| anyhow::anyhow!(f.message());
    // Ask something small first: a server refusing the token (or not
    // knowing the shop step) says so, where refusing an upload it has not
    // read would cut the connection under it.
    let step = format!("/v1/shops/{}/steps/{}", args.shop, args.step);
    conn.call("GET", &format!("{step}/versions"), Needs::Admin, None)
        .map_err(failed)?;
    let path = format!("{step}/replays");
    let start = format!("{path}?{}", query.join("&"));
    let started = conn
        .call("POST", &start, Needs::Admin, Some(Body::multipart(&parts)))
        .map_err(failed)?;
    let id = started["id"]
        .as_u64()
        .context("the server's answer has no replay id")?;
    let bar = Bar::new();
    let done = loop {
        let view = conn
            .call("GET", &format!("{path}/{id}"), Needs::Admin, None)
            .map_err(failed)?;
        bar.show(
            view["done"].as_u64().unwrap_or(0),
            view["total"].as_u64().unwrap_or(0),
        );
        if view["status"] != "running" {
            break view;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    bar.end();
    if done["status"] != "done" {
        bail!(
            "the replay failed on the server: {}",
            done["error"].as_str().unwrap_or("no reason given")
        );
    }
    serde_json::from_value(done["report"].clone()).context("the server's report")
}

/// A progress line on a terminal, redrawn as the replay goes.
struct Bar(bool);

impl Bar {
    fn new() -> Bar {
        Bar(std::io::stderr().is_terminal())
    }

    fn show(&self, done: u64, total: u64) {
        if self.0 && total > 0 {
            let width = 30;
            let filled = (done * width / total.max(1)).min(width) as usize;
            eprint!(
                "\r[{}{}] {done}/{total}",
                "#".repeat(filled),
                " ".repeat(width as usize - filled)
            );
        }
    }

    fn end(&self) {
        if self.0 {
            eprintln!();
        }
    }
}

fn print(r: &ReplayReport) {
    println!(
        "replayed {} decisions of {} with {} (config: {}) in {} ms: {} unchanged, {} changed, {} skipped",
        r.replayed, r.shop, r.candidate, r.config, r.took_ms, r.unchanged, r.changed, r.skipped
    );
    if !r.candidate_errors.is_empty() {
        let errors: Vec<String> = r
            .candidate_errors
            .iter()
            .map(|(code, n)| format!("{code} {n}"))
            .collect();
        println!("candidate errors: {}", errors.join(", "));
    }
    let rows = |groups: &[kefu::app::ReplayGroup]| -> Vec<Vec<String>> {
        groups
            .iter()
            .map(|g| {
                let ids: Vec<String> = g.examples.iter().map(u64::to_string).collect();
                vec![g.change.clone(), g.count.to_string(), ids.join(" ")]
            })
            .collect()
    };
    if !r.flips.is_empty() {
        table(&["decision change", "count", "examples"], &rows(&r.flips));
    }
    if !r.fields.is_empty() {
        table(&["field", "count", "examples"], &rows(&r.fields));
    }
    if r.refund_delta_fen != 0 {
        println!("refunds: {:+.2} yuan approved", r.refund_delta_yuan);
    }
    println!(
        "call time p50/p99: original {}/{} µs, candidate {}/{} µs; candidate memory peak {} KiB",
        r.original_time.p50_us,
        r.original_time.p99_us,
        r.candidate_time.p50_us,
        r.candidate_time.p99_us,
        r.candidate_memory_peak / 1024
    );
    if r.unrecorded_state_reads > 0 {
        println!(
            "{} state reads of keys the original calls never read (served as absent)",
            r.unrecorded_state_reads
        );
    }
}
