//! The scheduler marks planned revisits due when their time comes (from
//! the due-time index), queues the shop's webhook in the outbox
//! (`webhooks.rs` delivers it) and hands the shop's flow a `revisit.due`
//! event.

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
                        .and_then(|s| s.webhook.as_ref().map(|w| w.url.clone()))
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
                            dead: false,
                            idempotency_key: None,
                            queued_ms: now_ms,
                        });
                    }
                    r
                })
                .collect();
            // Each also goes to its shop's flow as `revisit.due`, first:
            // after a crash before the revisit leaves the due index, it
            // fires again and its event is a duplicate.
            let mut events = Vec::new();
            for r in &updated {
                if self.registry.get(&r.shop).is_some() {
                    let mut event = crate::app::events::worker::revisit_due(r)?;
                    event.seq = self.storage.next_id()?;
                    events.push(event);
                }
            }
            self.storage.accept_events(&events)?;
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
                let said = crate::app::said::Said::default();
                while !stop.load(Ordering::Relaxed) {
                    let now = chrono::Utc::now();
                    match self.tick(now.timestamp(), now.timestamp_millis()) {
                        Ok(_) => said.worked("the revisit scheduler"),
                        Err(e) => said.failed("revisit scheduler failed; retrying", &e),
                    }
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawn scheduler thread");
    }
}
