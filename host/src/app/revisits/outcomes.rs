//! What agents do with a revisit: record an attempt's outcome (closing or
//! re-planning it), cancel it, mark a customer do-not-contact; and the
//! shop's report over them.

use crate::storage::{
    OutcomeResult, RevisitOutcome, RevisitRecord, RevisitStatus, Storage, StorageError,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Why an outcome or cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum RevisitError {
    #[error("no revisit {0} in this shop")]
    NotFound(u64),
    #[error("revisit {id} is {status}: nothing more can be recorded")]
    Closed { id: u64, status: RevisitStatus },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An attempt's outcome as an agent reports it (回访记录).
#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeInput {
    #[schema(value_type = String, example = "reached")]
    pub result: OutcomeResult,
    /// 1 to 5, when the customer was reached and said.
    #[schema(minimum = 1, maximum = 5)]
    pub satisfaction: Option<u8>,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub agent: String,
}

/// Record one attempt's outcome at `at` (unix seconds); a no-answer
/// re-plans the next attempt ([`next_attempt`]) until `max_attempts`,
/// then closes it as unreachable.
pub fn record_outcome(
    storage: &dyn Storage,
    shop: &str,
    id: u64,
    at: i64,
    input: OutcomeInput,
) -> Result<RevisitRecord, RevisitError> {
    let mut r = open_revisit(storage, shop, id)?;
    match input.satisfaction {
        Some(s) if !(1..=5).contains(&s) => {
            return Err(RevisitError::Invalid("satisfaction must be 1 to 5".into()));
        }
        Some(_) if input.result != OutcomeResult::Reached => {
            return Err(RevisitError::Invalid(
                "satisfaction is only given by a reached customer".into(),
            ));
        }
        _ => {}
    }
    r.attempts_made += 1;
    r.status = match input.result {
        OutcomeResult::Reached | OutcomeResult::Refused => RevisitStatus::Done,
        OutcomeResult::WrongNumber => RevisitStatus::Unreachable,
        OutcomeResult::NoAnswer if r.attempts_made < r.max_attempts => {
            r.due_at = next_attempt(r.due_at, at, r.retry_after_hours);
            RevisitStatus::Planned
        }
        OutcomeResult::NoAnswer => RevisitStatus::Unreachable,
    };
    r.outcomes.push(RevisitOutcome {
        at,
        result: input.result,
        satisfaction: input.satisfaction,
        note: input.note,
        agent: input.agent,
    });
    storage.put_revisits(std::slice::from_ref(&r))?;
    Ok(r)
}

/// When to try again a revisit that was due at `due_at` and not answered
/// at `at`: at the same time of day as it was planned for (the plugin
/// chose it inside the shop's contact hours, so a retry is never due
/// outside them, whenever the agent recorded the attempt), on the first
/// day at least `retry_after_hours` after `due_at` and after `at`.
pub fn next_attempt(due_at: i64, at: i64, retry_after_hours: u32) -> i64 {
    const DAY: i64 = 86_400;
    let days = u64::from(retry_after_hours).div_ceil(24).max(1) as i64;
    let next = due_at.saturating_add(days * DAY);
    if next > at {
        next
    } else {
        // Recorded days late: the first such time after the attempt.
        next.saturating_add((at - next) / DAY * DAY + DAY)
    }
}

/// Revisit `id` of `shop`, if it is still open (planned or due).
fn open_revisit(storage: &dyn Storage, shop: &str, id: u64) -> Result<RevisitRecord, RevisitError> {
    let r = storage
        .revisit(id)?
        .filter(|r| r.shop == shop)
        .ok_or(RevisitError::NotFound(id))?;
    if !r.status.is_open() {
        return Err(RevisitError::Closed {
            id,
            status: r.status,
        });
    }
    Ok(r)
}

/// Cancel a planned or due revisit.
pub fn cancel(storage: &dyn Storage, shop: &str, id: u64) -> Result<RevisitRecord, RevisitError> {
    let mut r = open_revisit(storage, shop, id)?;
    r.status = RevisitStatus::Cancelled;
    storage.put_revisits(std::slice::from_ref(&r))?;
    Ok(r)
}

/// Mark a customer do-not-contact and cancel their open revisits; how many.
pub fn do_not_contact(
    storage: &dyn Storage,
    shop: &str,
    customer: &str,
) -> Result<usize, StorageError> {
    storage.set_do_not_contact(shop, customer, true)?;
    let open: Vec<RevisitRecord> = storage
        .revisits(shop, None, usize::MAX)?
        .into_iter()
        .filter(|r| r.customer_id == customer && r.status.is_open())
        .map(|mut r| {
            r.status = RevisitStatus::Cancelled;
            r
        })
        .collect();
    storage.put_revisits(&open)?;
    Ok(open.len())
}

/// 回访总结报告 of `[from, to)` (unix seconds): the revisits due or worked
/// in the period, and what happened in it, counted by when it happened
/// (an attempt by when it was made, a close by its closing attempt), so a
/// revisit worked this week and re-planned for next week counts in this
/// week's report.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub shop: String,
    pub from: i64,
    pub to: i64,
    /// Revisits due in the period or with an attempt in it.
    pub planned: usize,
    /// Attempts made in the period (outcomes recorded).
    pub attempts: usize,
    /// Revisits closed in the period: the customer answered...
    pub done: usize,
    /// ...or could not be reached.
    pub unreachable: usize,
    /// Of `planned`, those cancelled.
    pub cancelled: usize,
    /// Of `planned`, those still planned or due.
    pub open: usize,
    /// Revisits where the customer was reached in the period.
    pub reached: usize,
    /// Reached over closed (done or unreachable) in the period; none while
    /// none closed.
    pub success_rate: Option<f64>,
    pub satisfaction_average: Option<f64>,
    /// How many answers in the period gave each score, "1" to "5".
    pub satisfaction_distribution: BTreeMap<String, usize>,
    /// Of `planned`, complaint follow-ups by the complaint's cause.
    pub complaint_causes: BTreeMap<String, usize>,
}

pub fn report(
    storage: &dyn Storage,
    shop: &str,
    from: i64,
    to: i64,
) -> Result<Report, StorageError> {
    let during = |t: i64| t >= from && t < to;
    let all: Vec<RevisitRecord> = storage
        .revisits(shop, None, usize::MAX)?
        .into_iter()
        .filter(|r| during(r.due_at) || r.outcomes.iter().any(|o| during(o.at)))
        .collect();
    let count = |status: RevisitStatus| all.iter().filter(|r| r.status == status).count();
    // Closed in the period: by an attempt made in it (every close but a
    // cancel is an attempt's outcome).
    let closed_as = |status: RevisitStatus| {
        all.iter()
            .filter(|r| r.status == status && r.outcomes.last().is_some_and(|o| during(o.at)))
            .count()
    };
    let outcomes = || {
        all.iter()
            .flat_map(|r| r.outcomes.iter())
            .filter(|o| during(o.at))
    };
    let reached = all
        .iter()
        .filter(|r| {
            r.outcomes
                .iter()
                .any(|o| o.result == OutcomeResult::Reached && during(o.at))
        })
        .count();
    let (done, unreachable) = (
        closed_as(RevisitStatus::Done),
        closed_as(RevisitStatus::Unreachable),
    );
    let scores: Vec<u8> = outcomes().filter_map(|o| o.satisfaction).collect();
    let mut distribution: BTreeMap<String, usize> =
        (1..=5).map(|s: u8| (s.to_string(), 0)).collect();
    for s in &scores {
        *distribution.entry(s.to_string()).or_default() += 1;
    }
    let mut causes = BTreeMap::<String, usize>::new();
    for cause in all.iter().filter_map(|r| r.cause.clone()) {
        *causes.entry(cause).or_default() += 1;
    }
    Ok(Report {
        shop: shop.to_string(),
        from,
        to,
        planned: all.len(),
        attempts: outcomes().count(),
        done,
        unreachable,
        cancelled: count(RevisitStatus::Cancelled),
        open: count(RevisitStatus::Planned) + count(RevisitStatus::Due),
        reached,
        success_rate: (done + unreachable > 0)
            .then(|| reached as f64 / (done + unreachable) as f64),
        satisfaction_average: (!scores.is_empty())
            .then(|| scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64),
        satisfaction_distribution: distribution,
        complaint_causes: causes,
    })
}
