//! `kefu simulate --shop DIR --events FILE.jsonl [--now T] [--json]`: a
//! shop's flow tried locally on an event stream, on a virtual clock that
//! jumps to each due timer; prints each order's and customer's timeline.

use super::client::table;
use anyhow::Context;
use clap::Args;
use kefu::app::{Simulation, TimelineEntry, simulate};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SimulateArgs {
    /// The shop folder (its shop.toml, plugins and config).
    #[arg(long)]
    shop: PathBuf,
    /// The events, one JSON object per line (as POSTed to
    /// /v1/shops/{shop}/events); `#` lines are comments.
    #[arg(long)]
    events: PathBuf,
    /// Start the clock here (unix seconds or RFC 3339); default: the first
    /// event's time.
    #[arg(long)]
    now: Option<String>,
    /// Print the simulation as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("--now `{text}` is neither unix seconds nor RFC 3339"))?
        .timestamp())
}

/// A time as the shops see it (China Standard Time).
fn local(secs: i64) -> String {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).expect("a valid offset");
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.with_timezone(&cst).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| secs.to_string())
}

fn short(value: &serde_json::Value, max: usize) -> String {
    let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = text.replace('\n', " ");
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text,
    }
}

pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let start = args.now.as_deref().map(parse_time).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start tokio")?;
    let sim = runtime.block_on(simulate(
        &args.shop,
        &args.events,
        start,
        super::default_cache_dir(),
    ))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&sim)?);
    } else {
        print(&sim);
    }
    let failed = sim
        .ran
        .iter()
        .any(|s| s.status == kefu::storage_types::EventStatus::Failed);
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print(sim: &Simulation) {
    for timeline in &sim.timelines {
        println!("\n{} / {}", sim.shop, timeline.subject);
        let mut rows = Vec::new();
        for entry in &timeline.entries {
            rows.push(match entry {
                TimelineEntry::Event(e) => vec![
                    local(e.at),
                    "event".into(),
                    e.kind.clone(),
                    match &e.error {
                        Some(err) => format!("{:?}: {}", e.status, err.message),
                        None => format!("{:?}", e.status).to_lowercase(),
                    },
                ],
                TimelineEntry::Decision {
                    step,
                    version,
                    ok,
                    output,
                    at_ms: _,
                    ..
                } => vec![
                    String::new(),
                    "decision".into(),
                    format!("{step} v{version}"),
                    match (ok, output) {
                        (true, Some(o)) if step != "workflow" => short(o, 70),
                        (true, _) => "ok".into(),
                        (false, _) => "failed".into(),
                    },
                ],
                TimelineEntry::Action(a) => vec![
                    local(a.at_ms / 1000),
                    "action".into(),
                    a.kind.clone(),
                    short(a.data.get("text").unwrap_or(&a.data), 70),
                ],
                TimelineEntry::Timer {
                    name,
                    due_at,
                    pending,
                    ..
                } => vec![
                    local(*due_at),
                    "timer".into(),
                    name.clone(),
                    if *pending {
                        "waiting"
                    } else {
                        "fired or cancelled"
                    }
                    .into(),
                ],
                TimelineEntry::Revisit(r) => {
                    let r = serde_json::to_value(r).unwrap_or_default();
                    vec![
                        local(r["due_at"].as_i64().unwrap_or(0)),
                        "revisit".into(),
                        short(&r["purpose"], 30),
                        format!(
                            "{} attempts, {}",
                            r["max_attempts"],
                            short(&r["message"], 50)
                        ),
                    ]
                }
            });
        }
        table(&["when (UTC+8)", "what", "name", "detail"], &rows);
    }
    let failed = sim
        .ran
        .iter()
        .filter(|s| s.status == kefu::storage_types::EventStatus::Failed)
        .count();
    println!(
        "\n{} events processed ({} from timers), {failed} failed",
        sim.ran.len(),
        sim.ran.iter().filter(|s| s.kind == "timer.fired").count()
    );
}
