//! Revisits that happen: the scheduler marks planned revisits due when
//! their time comes (from the due-time index) and queues the shop's
//! webhook; the outbox worker delivers at least once, with retries and an
//! idempotency key; agents record outcomes, which close or re-plan them.

use super::shops::Registry;
use crate::storage::{Delivery, RevisitOutcome, RevisitRecord, Storage, StorageError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often the scheduler looks for due revisits (so one fires at most
/// this late, plus the time to mark it).
pub const TICK: Duration = Duration::from_millis(200);
/// Revisits marked due per storage batch.
const BATCH: usize = 1000;
/// Longest wait between two tries of a webhook.
const MAX_BACKOFF_MS: i64 = 60_000;

/// Marks due revisits and queues their webhooks.
pub struct Scheduler {
    storage: Arc<dyn Storage>,
    registry: Arc<Registry>,
}

impl Scheduler {
    pub fn new(storage: Arc<dyn Storage>, registry: Arc<Registry>) -> Self {
        Scheduler { storage, registry }
    }

    /// A scheduler for `storage` alone, with no shop (so no webhooks): for
    /// benchmarks and tools.
    pub fn standalone(storage: Arc<dyn Storage>) -> Self {
        Scheduler::new(storage, Arc::new(Registry::empty()))
    }

    /// Fire every planned revisit due at or before `now` (unix seconds):
    /// mark it due and queue its webhook, durably. Returns them, earliest
    /// first.
    pub fn tick(&self, now: i64, now_ms: i64) -> Result<Vec<RevisitRecord>, StorageError> {
        let mut fired = Vec::new();
        loop {
            let batch = self.storage.due_revisits(now, BATCH)?;
            if batch.is_empty() {
                break;
            }
            let mut deliveries = Vec::new();
            let updated: Vec<RevisitRecord> = batch
                .into_iter()
                .map(|mut r| {
                    r.status = "due".into();
                    if let Some(url) = self
                        .registry
                        .get(&r.shop)
                        .and_then(|s| s.revisit_webhook.clone())
                    {
                        deliveries.push(Delivery {
                            key: format!("revisit-{}-{}", r.id, r.attempts_made + 1),
                            shop: r.shop.clone(),
                            url,
                            body: serde_json::json!({ "event": "revisit.due", "revisit": &r })
                                .to_string(),
                            tries: 0,
                            next_try_ms: now_ms,
                            last_error: None,
                        });
                    }
                    r
                })
                .collect();
            // Queue the webhooks before leaving the due index: a crash in
            // between re-fires (at least once), never loses one.
            self.storage.put_deliveries(&deliveries)?;
            self.storage.put_revisits(&updated)?;
            fired.extend(updated);
        }
        if !fired.is_empty() {
            self.storage.flush()?;
            metrics::counter!("kefu_revisits_fired_total").increment(fired.len() as u64);
        }
        Ok(fired)
    }

    /// Run `tick` on the wall clock every [`TICK`] until `stop`.
    pub fn spawn(self, stop: Arc<AtomicBool>) {
        std::thread::Builder::new()
            .name("kefu-scheduler".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = chrono::Utc::now();
                    if let Err(e) = self.tick(now.timestamp(), now.timestamp_millis()) {
                        tracing::error!(error = %e, "revisit scheduler failed; retrying");
                    }
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawn scheduler thread");
    }
}

/// Delivers queued webhooks: POST the body with an `Idempotency-Key`
/// header; a 2xx answer removes it, anything else retries with backoff.
pub fn spawn_outbox(storage: Arc<dyn Storage>, stop: Arc<AtomicBool>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    std::thread::Builder::new()
        .name("kefu-webhooks".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now_ms = chrono::Utc::now().timestamp_millis();
                let ready = storage.deliveries_ready(now_ms, 256).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read the webhook outbox");
                    Vec::new()
                });
                if ready.is_empty() {
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                for mut d in ready {
                    let result = agent
                        .post(&d.url)
                        .header("content-type", "application/json")
                        .header("idempotency-key", &d.key)
                        .send(d.body.as_bytes());
                    let error = match result {
                        Ok(resp) if resp.status().is_success() => None,
                        Ok(resp) => Some(format!("HTTP {}", resp.status().as_u16())),
                        Err(e) => Some(e.to_string()),
                    };
                    let outcome = match error {
                        None => storage.remove_delivery(&d.key),
                        Some(e) => {
                            d.tries += 1;
                            let backoff = (1_000i64 << d.tries.min(6)).min(MAX_BACKOFF_MS);
                            d.next_try_ms = chrono::Utc::now().timestamp_millis() + backoff;
                            tracing::warn!(key = %d.key, shop = %d.shop, tries = d.tries, error = %e, "webhook failed; will retry");
                            d.last_error = Some(e);
                            storage.put_deliveries(std::slice::from_ref(&d))
                        }
                    };
                    if let Err(e) = outcome {
                        tracing::error!(error = %e, "cannot update the webhook outbox");
                    }
                    metrics::counter!("kefu_webhooks_total", "outcome" => if d.last_error.is_none() { "delivered" } else { "failed" }).increment(1);
                }
            }
        })
        .expect("spawn webhook thread");
}

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
    let mut r = storage
        .revisit(id)?
        .filter(|r| r.shop == shop)
        .ok_or(RevisitError::NotFound(id))?;
    if !matches!(r.status.as_str(), "planned" | "due") {
        return Err(RevisitError::Closed {
            id,
            status: r.status,
        });
    }
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

/// Cancel a planned or due revisit.
pub fn cancel(storage: &dyn Storage, shop: &str, id: u64) -> Result<RevisitRecord, RevisitError> {
    let mut r = storage
        .revisit(id)?
        .filter(|r| r.shop == shop)
        .ok_or(RevisitError::NotFound(id))?;
    if !matches!(r.status.as_str(), "planned" | "due") {
        return Err(RevisitError::Closed {
            id,
            status: r.status,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;

    fn revisit(store: &dyn Storage, customer: &str, due_at: i64) -> RevisitRecord {
        RevisitRecord {
            id: store.next_id().unwrap(),
            shop: "s".into(),
            customer_id: customer.into(),
            due_at,
            channel: serde_json::json!("Chat"),
            purpose: "satisfaction".into(),
            message: "hi".into(),
            max_attempts: 3,
            retry_after_hours: 24,
            status: "planned".into(),
            decision_id: 0,
            attempts_made: 0,
            planned_at: 0,
            cause: None,
            outcomes: Vec::new(),
        }
    }

    fn setup() -> (tempfile::TempDir, Arc<dyn Storage>, Scheduler) {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let scheduler = Scheduler::new(storage.clone(), Arc::new(Registry::empty()));
        (dir, storage, scheduler)
    }

    #[test]
    fn revisits_fire_in_due_order_and_never_early() {
        let (_dir, storage, scheduler) = setup();
        // Planned out of order.
        let planned: Vec<RevisitRecord> = [30, 10, 20, 10, 40]
            .iter()
            .map(|&t| revisit(storage.as_ref(), "c", 1_000 + t))
            .collect();
        storage.put_revisits(&planned).unwrap();
        assert!(
            scheduler.tick(1_009, 0).unwrap().is_empty(),
            "nothing is due before its time"
        );
        let fire = |now| -> Vec<i64> {
            scheduler
                .tick(now, 0)
                .unwrap()
                .iter()
                .map(|r| r.due_at)
                .collect()
        };
        let fired = fire(1_020);
        assert_eq!(
            fired,
            [1_010, 1_010, 1_020],
            "due order, up to now inclusive"
        );
        assert!(
            scheduler.tick(1_020, 0).unwrap().is_empty(),
            "none fires twice"
        );
        let fired = fire(2_000);
        assert_eq!(fired, [1_030, 1_040]);
        assert_eq!(storage.revisits("s", Some("due"), 100).unwrap().len(), 5);
        assert!(
            storage
                .revisits("s", Some("planned"), 100)
                .unwrap()
                .is_empty()
        );
    }

    fn outcome(at: i64, result: &str, satisfaction: Option<u8>) -> RevisitOutcome {
        RevisitOutcome {
            at,
            result: result.into(),
            satisfaction,
            note: String::new(),
            agent: "慧兰".into(),
        }
    }

    #[test]
    fn no_answer_replans_until_the_attempts_run_out() {
        let (_dir, storage, scheduler) = setup();
        let r = revisit(storage.as_ref(), "c", 100);
        storage.put_revisits(std::slice::from_ref(&r)).unwrap();
        scheduler.tick(100, 0).unwrap();
        let after1 =
            record_outcome(storage.as_ref(), "s", r.id, outcome(200, "no-answer", None)).unwrap();
        assert_eq!(
            (after1.status.as_str(), after1.due_at),
            ("planned", 200 + 24 * 3600)
        );
        assert!(scheduler.tick(200 + 24 * 3600 - 1, 0).unwrap().is_empty());
        assert_eq!(
            scheduler.tick(200 + 24 * 3600, 0).unwrap().len(),
            1,
            "the retry fires"
        );
        record_outcome(
            storage.as_ref(),
            "s",
            r.id,
            outcome(90_000, "no-answer", None),
        )
        .unwrap();
        let last = record_outcome(
            storage.as_ref(),
            "s",
            r.id,
            outcome(200_000, "no-answer", None),
        )
        .unwrap();
        assert_eq!(
            (last.status.as_str(), last.attempts_made),
            ("unreachable", 3)
        );
        assert!(matches!(
            record_outcome(storage.as_ref(), "s", r.id, outcome(0, "reached", Some(5))),
            Err(RevisitError::Closed { .. })
        ));
        assert!(matches!(
            record_outcome(
                storage.as_ref(),
                "other-shop",
                r.id,
                outcome(0, "reached", None)
            ),
            Err(RevisitError::NotFound(_))
        ));
    }

    #[test]
    fn bad_outcomes_are_refused() {
        let (_dir, storage, _) = setup();
        let r = revisit(storage.as_ref(), "c", 100);
        storage.put_revisits(std::slice::from_ref(&r)).unwrap();
        assert!(matches!(
            record_outcome(storage.as_ref(), "s", r.id, outcome(0, "maybe", None)),
            Err(RevisitError::Invalid(_))
        ));
        assert!(matches!(
            record_outcome(storage.as_ref(), "s", r.id, outcome(0, "reached", Some(6))),
            Err(RevisitError::Invalid(_))
        ));
        assert!(matches!(
            record_outcome(
                storage.as_ref(),
                "s",
                r.id,
                outcome(0, "no-answer", Some(3))
            ),
            Err(RevisitError::Invalid(_))
        ));
    }

    #[test]
    fn do_not_contact_cancels_open_revisits() {
        let (_dir, storage, scheduler) = setup();
        let mine = [
            revisit(storage.as_ref(), "quiet", 10),
            revisit(storage.as_ref(), "quiet", 20),
        ];
        let other = revisit(storage.as_ref(), "chatty", 10);
        storage.put_revisits(&mine).unwrap();
        storage.put_revisits(std::slice::from_ref(&other)).unwrap();
        assert_eq!(do_not_contact(storage.as_ref(), "s", "quiet").unwrap(), 2);
        assert!(storage.is_do_not_contact("s", "quiet").unwrap());
        let fired = scheduler.tick(100, 0).unwrap();
        assert_eq!(
            fired
                .iter()
                .map(|r| r.customer_id.as_str())
                .collect::<Vec<_>>(),
            ["chatty"],
            "cancelled revisits never fire"
        );
        assert!(matches!(
            cancel(storage.as_ref(), "s", mine[0].id),
            Err(RevisitError::Closed { .. })
        ));
    }

    #[test]
    fn report_figures_match_hand_counted_data() {
        let (_dir, storage, _) = setup();
        let s = storage.as_ref();
        // Ten revisits due inside [1000, 2000), one outside.
        let mut rs: Vec<RevisitRecord> = (0..10)
            .map(|i| revisit(s, &format!("c{i}"), 1_000 + i * 10))
            .collect();
        rs.push(revisit(s, "late", 5_000));
        rs[0].cause = Some("logistics".into());
        rs[1].cause = Some("logistics".into());
        rs[2].cause = Some("product".into());
        s.put_revisits(&rs).unwrap();
        // c0..c3 reached with satisfaction 5, 4, 4, 2; c4 refused;
        // c5 wrong number; c6 no answer x3 (unreachable); c7 cancelled;
        // c8, c9 still open.
        for (i, score) in [5, 4, 4, 2].into_iter().enumerate() {
            record_outcome(s, "s", rs[i].id, outcome(1, "reached", Some(score))).unwrap();
        }
        record_outcome(s, "s", rs[4].id, outcome(1, "refused", None)).unwrap();
        record_outcome(s, "s", rs[5].id, outcome(1, "wrong-number", None)).unwrap();
        for _ in 0..3 {
            // Re-planning moves it out of the window; count by the first due.
            let mut r = s.revisit(rs[6].id).unwrap().unwrap();
            r.due_at = rs[6].due_at;
            s.put_revisits(std::slice::from_ref(&r)).unwrap();
            record_outcome(s, "s", rs[6].id, outcome(1, "no-answer", None)).unwrap();
        }
        cancel(s, "s", rs[7].id).unwrap();

        let report = report(s, "s", 1_000, 2_000).unwrap();
        assert_eq!(report["planned"], 10);
        assert_eq!(report["done"], 5, "4 reached + 1 refused");
        assert_eq!(report["unreachable"], 2, "wrong number + three no-answers");
        assert_eq!(report["cancelled"], 1);
        assert_eq!(report["open"], 2);
        assert_eq!(report["reached"], 4);
        assert_eq!(report["success_rate"], 4.0 / 7.0);
        assert_eq!(report["satisfaction_average"], 3.75);
        assert_eq!(
            report["satisfaction_distribution"],
            serde_json::json!({"1": 0, "2": 1, "3": 0, "4": 2, "5": 1})
        );
        assert_eq!(
            report["complaint_causes"],
            serde_json::json!({"logistics": 2, "product": 1})
        );
    }
}
