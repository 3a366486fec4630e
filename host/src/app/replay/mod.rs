//! Replay (backtest): a candidate version run over a shop step's logged
//! decisions, each with the call's recorded input, clock and state reads
//! (see `state`), and the config it ran with (the decision's version's,
//! or the candidate's own), its state writes thrown away, nothing sent and
//! nothing live changed; then the report of what would have changed.

pub mod budget;
mod diff;
pub mod jobs;
pub mod shadow;
pub mod state;

use crate::error::CallError;
use crate::runtime::{CallContext, Pace, Plugin, Runtime};
use crate::steps::Step;
use crate::storage::{Decision, DecisionLog, DecisionQuery, Storage, StorageError};
pub use diff::changed_paths;
use diff::outcome_label;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Examples kept per group of changes.
pub const EXAMPLES: usize = 5;

/// What a replay runs.
pub struct Candidate {
    pub plugin: Plugin,
    /// The config to run with; none: each decision's version's own.
    pub config_json: Option<String>,
    /// How the report names it (e.g. `version 3`, or the upload's digest).
    pub label: String,
}

impl Candidate {
    /// An uploaded component, named by its digest's first 12 digits.
    pub fn upload(
        runtime: &Runtime,
        step: Step,
        component: &[u8],
        config_json: Option<String>,
    ) -> Result<Candidate, crate::error::LoadError> {
        Ok(Candidate {
            plugin: runtime.load(component, step)?,
            config_json,
            label: format!("upload {}", &crate::runtime::digest(component)[..12]),
        })
    }
}

/// Which logged decisions a replay takes: of the shop's step, logged in
/// `[since_ms, until_ms)`, at most `limit` (the oldest first).
#[derive(Clone, Debug, Default)]
pub struct Filters {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: Option<u64>,
}

/// How far a replay got (read while it runs).
#[derive(Default)]
pub struct Progress {
    pub done: AtomicU64,
    pub total: AtomicU64,
    /// Set to stop early.
    pub cancel: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("replay stopped")]
    Cancelled,
}

/// One group of changed decisions.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeGroup {
    /// `reject → approve`, or an output field's path.
    pub change: String,
    pub count: u64,
    /// Up to five decision ids (see the examples endpoint).
    pub examples: Vec<u64>,
}

/// Call-time quantiles, microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CallTiming {
    pub p50_us: u64,
    pub p99_us: u64,
}

impl CallTiming {
    fn of(mut times: Vec<u64>) -> Self {
        times.sort_unstable();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        CallTiming {
            p50_us: at(0.5),
            p99_us: at(0.99),
        }
    }
}

/// What a replay found.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplayReport {
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Option<Step>,
    pub candidate: String,
    /// `given`, or `each decision's version's`.
    pub config: String,
    /// Decisions replayed...
    pub replayed: u64,
    /// ...answered alike (or failed alike)...
    pub unchanged: u64,
    /// ...and otherwise.
    pub changed: u64,
    /// Logged entries that could not be replayed (an input this build no
    /// longer parses).
    pub skipped: u64,
    /// The candidate's failures, by error code.
    pub candidate_errors: BTreeMap<String, u64>,
    /// Changes of the decision (`reject → approve`), most first.
    pub flips: Vec<ChangeGroup>,
    /// Changes by output field path, most first.
    pub fields: Vec<ChangeGroup>,
    /// Refunds: the candidate's approved amounts minus the original's, fen
    /// and yuan (positive: more money out).
    pub refund_delta_fen: i64,
    pub refund_delta_yuan: f64,
    pub original_time: CallTiming,
    pub candidate_time: CallTiming,
    /// The candidate's largest linear memory, bytes (the log keeps none
    /// for the originals).
    pub candidate_memory_peak: u64,
    /// State reads of keys the original never read (served as absent): a
    /// source of difference to know about.
    pub unrecorded_state_reads: u64,
    pub took_ms: u64,
}

/// One decision side by side.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayExample {
    pub decision_id: u64,
    #[schema(value_type = Object)]
    pub input: Value,
    /// The logged answer: `{"output": ...}` or `{"error": code}`.
    #[schema(value_type = Object)]
    pub original: Value,
    /// The candidate's, alike.
    #[schema(value_type = Object)]
    pub candidate: Value,
    /// Output fields that differ.
    pub changed_fields: Vec<String>,
}

/// A replay's report and its examples, by decision id.
pub struct Outcome {
    pub report: ReplayReport,
    pub examples: HashMap<u64, ReplayExample>,
}

/// Count what a replay with `filters` would take (for progress).
fn count(
    log: &dyn DecisionLog,
    shop: &str,
    step: Step,
    filters: &Filters,
) -> Result<u64, StorageError> {
    let mut n = 0u64;
    log.scan_decisions(&query(shop, step, filters), &mut |_| {
        n += 1;
        filters.limit.is_none_or(|l| n < l)
    })?;
    Ok(n)
}

fn query(shop: &str, step: Step, filters: &Filters) -> DecisionQuery {
    DecisionQuery {
        shop: shop.to_string(),
        step: Some(step),
        since_ms: filters.since_ms,
        until_ms: filters.until_ms,
        customer: None,
        order: None,
        version: None,
        limit: usize::MAX,
        scan_limit: None,
    }
}

/// Replay `candidate` over `shop`'s logged `step` decisions, counting
/// them first for `progress`.
///
/// A job beside live traffic gives `pace` (see `budget`): called between
/// decisions and at every epoch tick of a long call; the offline
/// `kefu replay` runs flat out.
#[allow(clippy::too_many_arguments)]
pub fn run(
    runtime: &Runtime,
    storage: &dyn Storage,
    shop: &str,
    step: Step,
    candidate: &Candidate,
    filters: &Filters,
    progress: &Progress,
    pace: Option<Pace>,
) -> Result<Outcome, ReplayError> {
    let started = std::time::Instant::now();
    progress
        .total
        .store(count(storage, shop, step, filters)?, Ordering::Relaxed);
    let configs: HashMap<u64, String> = storage
        .versions(shop, step)?
        .into_iter()
        .map(|v| (v.version, v.config_json))
        .collect();
    let mut tally = Tally::default();
    let mut stopped = false;
    storage.scan_decisions(&query(shop, step, filters), &mut |d| {
        if progress.cancel.load(Ordering::Relaxed) {
            stopped = true;
            return false;
        }
        let config = candidate
            .config_json
            .clone()
            .or_else(|| configs.get(&d.version).cloned())
            .unwrap_or_else(|| "{}".into());
        if let Some(pace) = pace {
            _ = pace();
        }
        // What it came to is counted; nothing more is needed here.
        match call(runtime, shop, step, candidate, config, d, pace) {
            Some(called) => _ = tally.count(step, called),
            None => tally.skip(),
        }
        let done = progress.done.fetch_add(1, Ordering::Relaxed) + 1;
        filters.limit.is_none_or(|l| done < l)
    })?;
    if stopped {
        return Err(ReplayError::Cancelled);
    }
    let mut report = tally.report();
    report.shop = shop.to_string();
    report.step = Some(step);
    report.candidate = candidate.label.clone();
    report.config = match candidate.config_json {
        Some(_) => "given".into(),
        None => "each decision's version's".into(),
    };
    report.took_ms = started.elapsed().as_millis() as u64;
    Ok(Outcome {
        report,
        examples: tally.examples,
    })
}

/// The report being counted.
/// Call times kept for the quantiles (a long shadow keeps the latest).
const TIMES_KEPT: usize = 100_000;

#[derive(Default)]
pub(crate) struct Tally {
    replayed: u64,
    unchanged: u64,
    changed: u64,
    skipped: u64,
    errors: BTreeMap<String, u64>,
    flips: BTreeMap<String, (u64, Vec<u64>)>,
    fields: BTreeMap<String, (u64, Vec<u64>)>,
    refund_delta_fen: i64,
    original_us: Vec<u64>,
    candidate_us: Vec<u64>,
    memory_peak: u64,
    unrecorded: u64,
    pub(crate) examples: HashMap<u64, ReplayExample>,
}

/// The logged or replayed answer, as JSON: `{"output": ...}` or
/// `{"error": code}`.
fn answer(output: Option<Value>, error: Option<&str>) -> Value {
    match (output, error) {
        (Some(output), _) => serde_json::json!({ "output": output }),
        (None, code) => serde_json::json!({ "error": code.unwrap_or("unknown") }),
    }
}

/// Keep `t` among at most [`TIMES_KEPT`] times, the oldest replaced.
fn keep_time(times: &mut Vec<u64>, seen: u64, t: u64) {
    if times.len() < TIMES_KEPT {
        times.push(t);
    } else {
        times[(seen as usize) % TIMES_KEPT] = t;
    }
}

/// A logged decision and the candidate's call on it.
pub(crate) struct Called {
    d: Decision,
    outcome: crate::runtime::CallOutcome,
    unrecorded: u64,
}

/// Run the candidate on one logged decision, with the call's input,
/// clock and state reads; `None` when the entry cannot be replayed (an
/// input this build no longer parses).
pub(crate) fn call(
    runtime: &Runtime,
    shop: &str,
    step: Step,
    candidate: &Candidate,
    config_json: String,
    d: Decision,
    pace: Option<Pace>,
) -> Option<Called> {
    let input = step.parse_input(d.input.get().as_bytes()).ok()?;
    let replayed = Arc::new(state::Replayed::new(&d.state_reads));
    let ctx = CallContext {
        shop: shop.to_string(),
        plugin: step.world().to_string(),
        config_json,
        now: d.now,
        state: replayed.clone(),
    };
    let outcome = match pace {
        Some(pace) => candidate.plugin.call_paced(runtime, ctx, &input, pace),
        None => candidate.plugin.call(runtime, ctx, &input),
    };
    Some(Called {
        d,
        outcome,
        unrecorded: replayed.unrecorded.load(Ordering::Relaxed),
    })
}

impl Tally {
    /// Count a candidate's call: whether it answered alike (`Ok(true)`),
    /// otherwise, or failed (its code).
    pub(crate) fn count(&mut self, step: Step, called: Called) -> Result<bool, &'static str> {
        let Called {
            d,
            outcome,
            unrecorded,
        } = called;
        self.replayed += 1;
        self.unrecorded += unrecorded;
        keep_time(&mut self.original_us, self.replayed, d.duration_us);
        keep_time(
            &mut self.candidate_us,
            self.replayed,
            outcome.duration.as_micros() as u64,
        );
        self.memory_peak = self.memory_peak.max(outcome.memory_peak as u64);
        let original: Option<Value> = d
            .output
            .as_ref()
            .and_then(|o| serde_json::from_str(o.get()).ok());
        let original_error = d.error.as_ref().map(|e| e.code.as_str());
        let (new, new_error): (Option<Value>, Option<&'static str>) = match &outcome.result {
            Ok(output) => (serde_json::to_value(output).ok(), None),
            Err(e) => (None, Some(CallError::code(e))),
        };
        if let Some(code) = new_error {
            *self.errors.entry(code.to_string()).or_default() += 1;
        }
        let same = match (&original, &new) {
            (Some(a), Some(b)) => a == b,
            (None, None) => original_error == new_error,
            _ => false,
        };
        if same {
            self.unchanged += 1;
            return Ok(true);
        }
        self.changed += 1;
        let label = |output: &Option<Value>, error: Option<&str>| match (output, error) {
            (Some(o), _) => outcome_label(step, o),
            (None, code) => format!("error {}", code.unwrap_or("unknown")),
        };
        let (from, to) = (label(&original, original_error), label(&new, new_error));
        let mut groups = Vec::new();
        if from != to {
            groups.push((true, format!("{from} → {to}")));
        }
        let paths = match (&original, &new) {
            (Some(a), Some(b)) => changed_paths(a, b),
            _ => Vec::new(),
        };
        groups.extend(paths.iter().map(|p| (false, p.clone())));
        if step == Step::RefundPolicy {
            let amount =
                |o: &Option<Value>| o.as_ref().and_then(|o| o["amount"].as_i64()).unwrap_or(0);
            self.refund_delta_fen += amount(&new) - amount(&original);
        }
        let mut example = false;
        for (flip, change) in groups {
            let group = match flip {
                true => &mut self.flips,
                false => &mut self.fields,
            };
            let entry = group.entry(change).or_default();
            entry.0 += 1;
            if entry.1.len() < EXAMPLES {
                entry.1.push(d.id);
                example = true;
            }
        }
        if example {
            self.examples.insert(
                d.id,
                ReplayExample {
                    decision_id: d.id,
                    input: serde_json::from_str(d.input.get()).unwrap_or(Value::Null),
                    original: answer(original, original_error),
                    candidate: answer(new, new_error),
                    changed_fields: paths,
                },
            );
        }
        new_error.map_or(Ok(false), Err)
    }

    /// A logged entry that could not be replayed.
    pub(crate) fn skip(&mut self) {
        self.skipped += 1;
    }

    pub(crate) fn report(&self) -> ReplayReport {
        let groups = |map: &BTreeMap<String, (u64, Vec<u64>)>| {
            let mut out: Vec<ChangeGroup> = map
                .iter()
                .map(|(change, (count, examples))| ChangeGroup {
                    change: change.clone(),
                    count: *count,
                    examples: examples.clone(),
                })
                .collect();
            out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.change.cmp(&b.change)));
            out
        };
        ReplayReport {
            replayed: self.replayed,
            unchanged: self.unchanged,
            changed: self.changed,
            skipped: self.skipped,
            candidate_errors: self.errors.clone(),
            flips: groups(&self.flips),
            fields: groups(&self.fields),
            refund_delta_fen: self.refund_delta_fen,
            refund_delta_yuan: self.refund_delta_fen as f64 / 100.0,
            original_time: CallTiming::of(self.original_us.clone()),
            candidate_time: CallTiming::of(self.candidate_us.clone()),
            candidate_memory_peak: self.memory_peak,
            unrecorded_state_reads: self.unrecorded,
            ..ReplayReport::default()
        }
    }
}
