//! `kefu replay --data DIR --shop S --step STEP --candidate FILE.wasm
//! [--config FILE] [--since MS] [--until MS] [--limit N] [--json]`: what
//! a candidate would have decided on a shop step's logged decisions, read
//! from a data directory (a copy of a server's, or a stopped server's).

use super::client::table;
use anyhow::Context;
use clap::Args;
use kefu::app::{ReplayFilters, ReplayProgress, ReplayReport, replay_dir};
use kefu::{Runtime, RuntimeConfig, Step};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

#[derive(Args)]
pub struct ReplayArgs {
    /// The data directory (`data_dir` of the server's config).
    #[arg(long)]
    data: PathBuf,
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
    let config = args
        .config
        .as_deref()
        .map(kefu::app::config::read_plugin_config)
        .transpose()?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: super::default_cache_dir(),
        limits: Default::default(),
        compile_worker: None,
    })
    .context("cannot start the plugin runtime")?;
    let filters = ReplayFilters {
        since_ms: args.since,
        until_ms: args.until,
        limit: args.limit,
    };
    let progress = ReplayProgress::default();
    let report = std::thread::scope(|scope| {
        let work = scope.spawn(|| {
            replay_dir(
                &args.data,
                &runtime,
                &args.shop,
                step,
                &component,
                config.clone(),
                &filters,
                &progress,
            )
        });
        // A progress line on a terminal, redrawn twice a second.
        let tty = std::io::stderr().is_terminal();
        while !work.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(500));
            let (done, total) = (
                progress.done.load(Ordering::Relaxed),
                progress.total.load(Ordering::Relaxed),
            );
            if tty && total > 0 {
                let width = 30;
                let filled = (done * width / total.max(1)).min(width) as usize;
                eprint!(
                    "\r[{}{}] {done}/{total}",
                    "#".repeat(filled),
                    " ".repeat(width as usize - filled)
                );
            }
        }
        if tty {
            eprintln!();
        }
        work.join().expect("the replay thread does not panic")
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(ExitCode::SUCCESS)
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
