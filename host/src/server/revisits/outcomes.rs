//! What agents do with a revisit: record an attempt's outcome (closing or
//! re-planning it), cancel it, mark a customer do-not-contact; and the
//! shop's report over them.

use crate::storage::{RevisitOutcome, RevisitRecord, Storage, StorageError};

/// Why an outcome or cancel was refused.
#[derive(Debug, thiserror::Error)]
pub enum RevisitError {
    #[error("no revisit {0} in this shop")]
    NotFound(u64),
    #[error("revisit {id} is {status}: nothing more can be recorded")]
    Closed { id: u64, status: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub const RESULTS: [&str; 4] = ["reached", "no-answer", "refused", "wrong-number"];

/// Record one attempt's outcome; a no-answer re-plans the next attempt
/// (after `retry_after_hours`) until `max_attempts`, then closes it as
/// unreachable.
pub fn record_outcome(
    storage: &dyn Storage,
    shop: &str,
    id: u64,
    outcome: RevisitOutcome,
) -> Result<RevisitRecord, RevisitError> {
    let mut r = open_revisit(storage, shop, id)?;
    if !RESULTS.contains(&outcome.result.as_str()) {
        return Err(RevisitError::Invalid(format!(
            "result must be one of {}",
            RESULTS.join(", ")
        )));
    }
    match outcome.satisfaction {
        Some(s) if !(1..=5).contains(&s) => {
            return Err(RevisitError::Invalid("satisfaction must be 1 to 5".into()));
        }
        Some(_) if outcome.result != "reached" => {
            return Err(RevisitError::Invalid(
                "satisfaction is only given by a reached customer".into(),
            ));
        }
        _ => {}
    }
    r.attempts_made += 1;
    r.status = match outcome.result.as_str() {
        "reached" | "refused" => "done".into(),
        "wrong-number" => "unreachable".into(),
        _ if r.attempts_made < r.max_attempts => {
            r.due_at = outcome.at + i64::from(r.retry_after_hours) * 3600;
            "planned".into()
        }
        _ => "unreachable".into(),
    };
    r.outcomes.push(outcome);
    storage.put_revisits(std::slice::from_ref(&r))?;
    Ok(r)
}

/// Revisit `id` of `shop`, if it is still open (planned or due).
fn open_revisit(storage: &dyn Storage, shop: &str, id: u64) -> Result<RevisitRecord, RevisitError> {
    let r = storage
        .revisit(id)?
        .filter(|r| r.shop == shop)
        .ok_or(RevisitError::NotFound(id))?;
    if !matches!(r.status.as_str(), "planned" | "due") {
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
    r.status = "cancelled".into();
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
        .filter(|r| r.customer_id == customer && matches!(r.status.as_str(), "planned" | "due"))
        .map(|mut r| {
            r.status = "cancelled".into();
            r
        })
        .collect();
    storage.put_revisits(&open)?;
    Ok(open.len())
}

/// 回访总结报告: revisits due in `[from, to)` (unix seconds).
pub fn report(
    storage: &dyn Storage,
    shop: &str,
    from: i64,
    to: i64,
) -> Result<serde_json::Value, StorageError> {
    let all: Vec<RevisitRecord> = storage
        .revisits(shop, None, usize::MAX)?
        .into_iter()
        .filter(|r| r.due_at >= from && r.due_at < to)
        .collect();
    let count = |status: &str| all.iter().filter(|r| r.status == status).count();
    let reached = all
        .iter()
        .filter(|r| r.outcomes.iter().any(|o| o.result == "reached"))
        .count();
    let closed = count("done") + count("unreachable");
    let scores: Vec<u8> = all
        .iter()
        .flat_map(|r| r.outcomes.iter().filter_map(|o| o.satisfaction))
        .collect();
    let mut distribution = [0usize; 5];
    for s in &scores {
        distribution[usize::from(*s) - 1] += 1;
    }
    let mut causes = std::collections::BTreeMap::<String, usize>::new();
    for cause in all.iter().filter_map(|r| r.cause.clone()) {
        *causes.entry(cause).or_default() += 1;
    }
    Ok(serde_json::json!({
        "shop": shop,
        "from": from,
        "to": to,
        "planned": all.len(),
        "done": count("done"),
        "unreachable": count("unreachable"),
        "cancelled": count("cancelled"),
        "open": count("planned") + count("due"),
        "reached": reached,
        "success_rate": if closed == 0 { None } else { Some(reached as f64 / closed as f64) },
        "satisfaction_average": if scores.is_empty() { None } else { Some(scores.iter().map(|&s| f64::from(s)).sum::<f64>() / scores.len() as f64) },
        "satisfaction_distribution": { "1": distribution[0], "2": distribution[1], "3": distribution[2], "4": distribution[3], "5": distribution[4] },
        "complaint_causes": causes,
    }))
}
