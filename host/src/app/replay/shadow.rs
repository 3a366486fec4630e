//! Shadow runs: a candidate answering a shop step's live traffic in the
//! shadows. After each live decision is logged, it goes to a bounded
//! queue; one thread held to a small CPU budget runs the candidate on it
//! as a replay does (the live call's input, clock and state reads, writes
//! thrown away), and counts what differs in the replay report's shape.
//! The live answer never waits for it: a full queue drops the decision
//! (`kefu_shadow_dropped_total`), a candidate that traps, loops or sleeps
//! only slows its own thread, and that thread shares no lock of kefu's
//! with the serving ones (an engine of its own; a queue it polls).

use super::{Candidate, ReplayExample, ReplayReport, Tally};
use crate::runtime::Runtime;
use crate::steps::Step;
use crate::storage::Decision;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Live decisions waiting for the shadow, at most.
pub const QUEUE: usize = 1024;

/// The shadow's own CPU budget: the share of one core its thread may use
/// (see `budget`). Past it the thread sleeps, its queue fills and drops
/// (counted) rather than take CPU, caches and wakeups from the serving
/// threads on a busy machine.
pub const CPU_SHARE: f64 = 0.15;

/// Sleep off what the shadow's thread used past [`CPU_SHARE`].
fn spend() -> std::time::Duration {
    super::budget::spend(CPU_SHARE)
}

/// A shadow running on one shop step.
pub struct Shadow {
    pub shop: String,
    pub step: Step,
    pub candidate: String,
    pub started_at_ms: i64,
    queue: SyncSender<Decision>,
    shared: Arc<Shared>,
    /// `kefu_shadow_dropped_total` of this step, looked up once.
    dropped: metrics::Counter,
}

/// What the shadow's thread and the API share.
struct Shared {
    tally: Mutex<Tally>,
    queued: AtomicU64,
    dropped: AtomicU64,
}

/// A shadow as the API shows it: its report so far.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShadowView {
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Step,
    pub candidate: String,
    pub started_at_ms: i64,
    /// Live decisions waiting for the candidate now.
    pub queued: u64,
    /// Live decisions the candidate never saw (the queue was full).
    pub dropped: u64,
    pub report: ReplayReport,
}

impl Shadow {
    /// Start the shadow's thread; it ends when the shadow is dropped.
    pub fn start(
        runtime: Arc<Runtime>,
        shop: &str,
        step: Step,
        candidate: Candidate,
        configs: std::collections::HashMap<u64, String>,
    ) -> std::io::Result<Shadow> {
        let (queue, received) = sync_channel(QUEUE);
        let shared = Arc::new(Shared {
            tally: Mutex::new(Tally::default()),
            queued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let label = candidate.label.clone();
        let (worker, shop_id) = (shared.clone(), shop.to_string());
        std::thread::Builder::new()
            .name(format!("kefu-shadow-{shop}"))
            .spawn(move || {
                // With the slow lane, on one core (see `placement`).
                crate::app::placement::pin_to_first_core();
                work(
                    &runtime, &shop_id, step, &candidate, &configs, received, &worker,
                );
            })?;
        Ok(Shadow {
            shop: shop.to_string(),
            step,
            candidate: label,
            started_at_ms: crate::app::now_ms(),
            queue,
            shared,
            dropped: metrics::counter!("kefu_shadow_dropped_total", "shop" => shop.to_string(), "step" => step.world()),
        })
    }

    /// Hand a live decision to the shadow, never waiting.
    pub fn offer(&self, decision: &Decision) {
        match self.queue.try_send(decision.clone()) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped.increment(1);
            }
        }
    }

    pub fn view(&self) -> ShadowView {
        let mut report = self
            .shared
            .tally
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report();
        report.shop = self.shop.clone();
        report.step = Some(self.step);
        report.candidate = self.candidate.clone();
        ShadowView {
            shop: self.shop.clone(),
            step: self.step,
            candidate: self.candidate.clone(),
            started_at_ms: self.started_at_ms,
            queued: self.shared.queued.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            report,
        }
    }

    /// One example decision, side by side.
    pub fn example(&self, decision: u64) -> Option<ReplayExample> {
        let tally = self.shared.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.examples.get(&decision).cloned()
    }
}

fn work(
    runtime: &Runtime,
    shop: &str,
    step: Step,
    candidate: &Candidate,
    configs: &std::collections::HashMap<u64, String>,
    received: Receiver<Decision>,
    shared: &Shared,
) {
    // Polled, not waited on: a receiver blocked in `recv` registers with
    // the channel under a lock that every live `try_send` would then take,
    // and the thread descheduled while holding it (out of its budget)
    // would stall the live answers behind it. Polled, senders touch only
    // atomics.
    loop {
        _ = spend();
        let decision = match received.try_recv() {
            Ok(decision) => decision,
            Err(TryRecvError::Empty) => {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            Err(TryRecvError::Disconnected) => break,
        };
        shared.queued.fetch_sub(1, Ordering::Relaxed);
        let config = candidate
            .config_json
            .clone()
            .or_else(|| configs.get(&decision.version).cloned())
            .unwrap_or_else(|| "{}".into());
        // The call runs outside the lock: a slow candidate never holds
        // up the report.
        let called = super::call(
            runtime,
            shop,
            step,
            candidate,
            config,
            decision,
            Some(spend),
        );
        let mut tally = shared.tally.lock().unwrap_or_else(|e| e.into_inner());
        let Some(called) = called else {
            tally.skip();
            continue;
        };
        let result = match tally.count(step, called) {
            Ok(true) => "same",
            Ok(false) => "different",
            Err(_) => "error",
        };
        drop(tally);
        metrics::counter!("kefu_shadow_calls_total", "shop" => shop.to_string(), "step" => step.world(), "result" => result).increment(1);
    }
}
