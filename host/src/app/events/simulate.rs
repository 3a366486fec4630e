//! `kefu simulate`: an event stream run through one shop folder on a
//! virtual clock, nothing served and nothing kept. Events go in file
//! order; before each, the timers due by its time fire (the clock jumps
//! to each), and after the last every timer left fires, so a reminder
//! set for two hours later shows up at once.

use super::input;
use super::process::{Outcome, process};
use super::worker::fired;
use super::{EventError, Timeline};
use crate::app::{App, Env, OpenError, ServerConfig};
use crate::storage::{EventRecord, EventStatus, StorageError};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most timers one simulation fires (a flow that keeps rescheduling
/// itself stops there).
pub const MAX_TIMERS: usize = 10_000;

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Event {
        path: String,
        line: usize,
        message: String,
    },
    #[error("{0} is not a shop folder (no shop.toml)")]
    NotAShop(String),
    #[error("the shop does not load: {0}")]
    Load(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Events(#[from] EventError),
    #[error("more than {MAX_TIMERS} timers fired: does the flow keep rescheduling itself?")]
    TooManyTimers,
    #[error("cannot make a scratch folder: {0}")]
    Scratch(std::io::Error),
}

/// One event as the simulation processed it.
#[derive(Debug, serde::Serialize)]
pub struct Step {
    /// The virtual clock, unix seconds.
    pub clock: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub subject: String,
    pub status: EventStatus,
}

/// What a simulation shows: the events in the order they ran, and each
/// subject's timeline.
#[derive(Debug, serde::Serialize)]
pub struct Simulation {
    pub shop: String,
    pub ran: Vec<Step>,
    pub timelines: Vec<Timeline>,
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Run the events of `events_file` (JSON lines, `#` comments and blank
/// lines allowed) through the shop folder `shop_dir`, starting the clock
/// at `start` (default: the first event's time). `cache_dir` is where
/// compiled plugins are kept between runs.
pub async fn simulate(
    shop_dir: &Path,
    events_file: &Path,
    start: Option<i64>,
    cache_dir: Option<PathBuf>,
) -> Result<Simulation, SimulateError> {
    if !shop_dir.join("shop.toml").is_file() {
        return Err(SimulateError::NotAShop(shop_dir.display().to_string()));
    }
    let text = std::fs::read_to_string(events_file).map_err(|source| SimulateError::Read {
        path: events_file.display().to_string(),
        source,
    })?;
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| SimulateError::Event {
            path: events_file.display().to_string(),
            line: i + 1,
            message,
        };
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let parsed = input::parse(value)
            .map_err(|e| bad(format!("invalid field `{}`: {}", e.path, e.message)))?;
        events.push(parsed);
    }

    // A scratch server of this one shop: its own data, no keys needed.
    let scratch = tempfile::tempdir().map_err(SimulateError::Scratch)?;
    let name = shop_dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "shop".into());
    copy_dir(shop_dir, &scratch.path().join("shops").join(&name)).map_err(|source| {
        SimulateError::Read {
            path: shop_dir.display().to_string(),
            source,
        }
    })?;
    let config = ServerConfig {
        data_dir: scratch.path().join("data"),
        shops_dir: scratch.path().join("shops"),
        cache_dir,
        ..ServerConfig::default()
    };
    // Any key variable the shop names reads as set: nothing is served.
    let env: Env = Arc::new(|_: &str| Some("simulation".to_string()));
    let app = App::open(config, env).await?;
    let Some(shop) = app.registry.get(&name) else {
        return Err(SimulateError::Load(app.load_failures().join("; ")));
    };
    if let Some(reason) = shop.unavailable_reason(crate::steps::Step::Workflow) {
        return Err(SimulateError::Load(format!("workflow: {reason}")));
    }

    let storage = app.storage.clone();
    let mut clock = start.or(events.first().map(|e| e.event.at)).unwrap_or(0);
    let mut ran = Vec::new();
    let mut subjects: Vec<String> = Vec::new();
    let mut timers_fired = 0;
    // Process one pending event at `clock` and keep what it made.
    let run = async |record: EventRecord, clock: i64, ran: &mut Vec<Step>| {
        let outcome = process(&app, Some(shop.clone()), record.clone(), Some(clock)).await?;
        let Outcome::Commit(commit) = outcome else {
            return Err(SimulateError::Load(format!(
                "event `{}` could not be processed now",
                record.id
            )));
        };
        storage.commit_event(&commit)?;
        ran.push(Step {
            clock,
            id: record.id,
            kind: record.kind,
            subject: record.subject,
            status: commit.event.status,
        });
        Ok::<_, SimulateError>(())
    };
    // Fire every timer due by `until`, earliest first, the clock on each.
    let fire_until = async |until: i64, clock: &mut i64, ran: &mut Vec<Step>, n: &mut usize| {
        loop {
            let due = storage.due_timers(until, 1)?;
            let Some(t) = due.into_iter().next() else {
                return Ok::<_, SimulateError>(());
            };
            *n += 1;
            if *n > MAX_TIMERS {
                return Err(SimulateError::TooManyTimers);
            }
            *clock = (*clock).max(t.at);
            let mut event = fired(&t)?;
            event.seq = storage.next_id()?;
            event.received_ms = *clock * 1000;
            storage.fire_timer(&t, &event)?;
            // `fire_timer` kept it pending: run it now.
            let kept = storage
                .event(&t.shop, &event.id)?
                .ok_or_else(|| StorageError::Corrupt("a fired timer's event is missing".into()))?;
            run(kept, *clock, ran).await?;
        }
    };
    for p in events {
        // Timers due before the event first; one due at its very second after it.
        fire_until(p.event.at - 1, &mut clock, &mut ran, &mut timers_fired).await?;
        clock = clock.max(p.event.at);
        if !subjects.contains(&p.subject) {
            subjects.push(p.subject.clone());
        }
        let mut record = input::record(&name, &p.event, clock * 1000)?;
        record.seq = storage.next_id()?;
        // An id the stream repeats is a duplicate: taken once.
        if storage.accept_event(&record)?.is_none() {
            run(record, clock, &mut ran).await?;
        }
    }
    fire_until(i64::MAX - 1, &mut clock, &mut ran, &mut timers_fired).await?;
    let mut timelines = Vec::new();
    for subject in subjects {
        timelines.push(app.timeline(&name, &subject)?);
    }
    Ok(Simulation {
        shop: name,
        ran,
        timelines,
    })
}
