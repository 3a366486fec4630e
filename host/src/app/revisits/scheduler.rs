//! The scheduler marks planned revisits due when their time comes (from
//! the due-time index) and queues the shop's webhook; the outbox worker
//! delivers it at least once, with retries and an idempotency key.

use crate::app::registry::Registry;
use crate::storage::{Delivery, RevisitRecord, RevisitStatus, Storage, StorageError};
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
                    r.status = RevisitStatus::Due;
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
            // Leaving the due index and queueing the webhooks are one
            // write: a crash never loses a webhook nor fires one twice.
            self.storage.fire_revisits(&updated, &deliveries)?;
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
