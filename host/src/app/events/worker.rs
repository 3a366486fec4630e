//! The inbox's worker: takes pending events in arrival order, one at a
//! time per subject and several subjects at once, processes each and
//! keeps what it made in one commit; and the timer clock, which turns
//! due timers into `timer.fired` events.

use super::process::{Outcome, process};
use super::writer::Writers;
use crate::app::App;
use crate::app::registry::now_ms;
use crate::bindings::flow::{Event, EventData, RevisitEvent, Subject, TimerEvent};
use crate::storage::{
    EventRecord, EventStatus, PendingRef, RevisitRecord, StorageError, TimerRecord,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Events processed at once (each of its own subject): enough that one
/// group-commit flush serves many of them.
pub const PARALLEL: usize = 32;
/// How long a subject waits after its event could not be processed now.
const LATER: Duration = Duration::from_secs(1);
/// How far down the inbox one look reaches for subjects that may go, at
/// most.
const LOOK_AHEAD: usize = 8 * PARALLEL;
/// Entries looked at per free slot, past those of subjects busy or left
/// for later (the head of the line).
const LOOK_PER_SLOT: usize = 8;
/// How often due timers are looked for.
pub const TIMER_TICK: Duration = Duration::from_millis(500);
/// Waits before reading again an event whose inbox entry was seen before
/// its record: an accept writes the entry first and the record a moment
/// later (see `accept_event`), and a look can fall in between. Only past
/// these (31 ms) does its subject wait [`LATER`]: the record of an entry
/// cut short by a crash never comes.
const UNWRITTEN: [Duration; 5] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(4),
    Duration::from_millis(8),
    Duration::from_millis(16),
];

/// What the worker shares with the API: a wake-up when events arrive.
#[derive(Default)]
pub struct Inbox {
    wake: tokio::sync::Notify,
    /// `shop \0 subject` being processed now.
    busy: Mutex<HashSet<String>>,
    /// Subjects to leave alone until then.
    later: Mutex<HashMap<String, Instant>>,
}

impl Inbox {
    /// New events are in: look now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn busy(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.busy.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn later(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.later.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn subject_key(e: &PendingRef) -> String {
    format!("{}\0{}", e.shop, e.subject)
}

/// Process pending events until `stop`.
pub fn spawn(app: Arc<App>, stop: Arc<AtomicBool>) {
    let inbox = app.inbox.clone();
    let threads = super::writer::threads(app.cluster.is_some(), PARALLEL);
    let writers = match Writers::start(app.storage.clone(), threads) {
        Ok(w) => Arc::new(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the event writers: events stay in the inbox");
            return;
        }
    };
    tokio::spawn(async move {
        let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let said = crate::app::said::Said::default();
        while !stop.load(Ordering::Relaxed) {
            // A look when every slot is taken would start nothing: wait
            // for one to be free (a finished event wakes us). Otherwise
            // look past the subjects that cannot go now (mostly at the
            // head of the line) and a few entries per free slot, not the
            // whole reach each time an event finishes.
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = inbox.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                continue;
            }
            let look =
                (inbox.busy().len() + inbox.later().len() + LOOK_PER_SLOT * free).min(LOOK_AHEAD);
            let storage = app.storage.clone();
            let pending =
                match tokio::task::spawn_blocking(move || storage.pending_events(look)).await {
                    Ok(Ok(p)) => {
                        said.worked("reading the event inbox");
                        p
                    }
                    Ok(Err(e)) => {
                        said.failed("cannot read the event inbox", &e);
                        tokio::time::sleep(LATER).await;
                        continue;
                    }
                    Err(_) => continue,
                };
            let mut seen = HashSet::new();
            let now = Instant::now();
            inbox.later().retain(|_, until| *until > now);
            for event in pending {
                let key = subject_key(&event);
                // Only the first pending event of a subject may go.
                if !seen.insert(key.clone())
                    || inbox.busy().contains(&key)
                    || inbox.later().contains_key(&key)
                {
                    continue;
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break;
                };
                inbox.busy().insert(key.clone());
                let (app, inbox, writers) = (app.clone(), inbox.clone(), writers.clone());
                tokio::spawn(async move {
                    handle(&app, &writers, event).await.unwrap_or_else(|why| {
                        tracing::warn!(subject = %key.replace('\0', "/"), reason = %why, "event left in the inbox for later");
                        inbox.later().insert(key.clone(), Instant::now() + LATER);
                    });
                    inbox.busy().remove(&key);
                    // The slot is free before the worker is woken: it
                    // looks only when one is.
                    drop(slot);
                    inbox.wake();
                });
            }
            tokio::select! {
                _ = inbox.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
}

/// Process one event and keep the result; an error says why it stays
/// pending.
async fn handle(app: &Arc<App>, writers: &Writers, entry: PendingRef) -> Result<(), String> {
    // The inbox list may be older than the last commit of its subject:
    // only an event still pending, in the same place in line, is
    // processed (the subject is this task's alone now).
    let current = written(|| app.storage.event(&entry.shop, &entry.id), &UNWRITTEN)
        .await
        .map_err(|e| e.to_string())?;
    let event = match current {
        Some(e) if e.status == EventStatus::Pending && e.seq == entry.seq => e,
        // Processed meanwhile (its entry goes with the commit).
        Some(_) => return Ok(()),
        // Still not written, so cut short by a crash (its entry goes at
        // the next open): look again in a while, not at once.
        None => {
            let key = subject_key(&entry);
            app.inbox.later().insert(key, Instant::now() + LATER);
            return Ok(());
        }
    };
    let shop = app.registry.get(&event.shop);
    let received_ms = event.received_ms;
    let outcome = process(app, shop, event, None)
        .await
        .map_err(|e| e.to_string())?;
    let commit = match outcome {
        Outcome::Commit(c) => c,
        Outcome::Later(why) => return Err(why),
    };
    let status = commit.event.status;
    let commit = writers.commit(commit).await.map_err(|e| {
        app.committer.write_failed(&e);
        e.to_string()
    })?;
    app.durable().await.map_err(|e| e.to_string())?;
    for (d, _) in &commit.decisions {
        if let Some(shop) = app.registry.get(&d.shop)
            && let Some(shadow) = shop.shadows.get(&d.step)
        {
            shadow.offer(d);
        }
    }
    let label = match status {
        EventStatus::Processed => "processed",
        EventStatus::Failed => "failed",
        EventStatus::Pending => "pending",
    };
    metrics::counter!("kefu_events_total", "status" => label).increment(1);
    metrics::histogram!("kefu_event_latency_seconds")
        .record((now_ms() - received_ms).max(0) as f64 / 1000.0);
    Ok(())
}

/// `read` until it finds something, waiting each of `waits` in turn
/// between tries; `None` once they are all spent.
async fn written<T, E>(
    mut read: impl FnMut() -> Result<Option<T>, E>,
    waits: &[Duration],
) -> Result<Option<T>, E> {
    for wait in waits {
        if let Some(found) = read()? {
            return Ok(Some(found));
        }
        tokio::time::sleep(*wait).await;
    }
    read()
}

/// The `timer.fired` event of a due timer.
pub fn fired(t: &TimerRecord) -> Result<EventRecord, StorageError> {
    let subject = super::input::subject_of(&t.subject)
        .ok_or_else(|| StorageError::Corrupt(format!("timer subject `{}`", t.subject)))?;
    let event = Event {
        id: format!("timer-{}", t.id),
        at: t.at,
        subject,
        data: EventData::TimerFired(TimerEvent {
            name: t.name.clone(),
            payload: t.payload.clone(),
            due_at: t.at,
        }),
    };
    let mut record = own_event(&t.shop, event)?;
    record.chain = t.chain;
    Ok(record)
}

/// The `revisit.due` event of a revisit come due (its `attempt`-th try),
/// about its customer: its id is made of the revisit's and the attempt's,
/// so firing it again is a duplicate.
pub fn revisit_due(r: &RevisitRecord) -> Result<EventRecord, StorageError> {
    let attempt = r.attempts_made + 1;
    let event = Event {
        id: format!("revisit-{}-{attempt}", r.id),
        at: r.due_at,
        subject: Subject::Customer(r.customer_id.clone()),
        data: EventData::RevisitDue(RevisitEvent {
            revisit_id: r.id,
            customer_id: r.customer_id.clone(),
            purpose: r.purpose.clone(),
            channel: r.channel,
            message: r.message.clone(),
            attempt,
        }),
    };
    own_event(&r.shop, event)
}

/// One of kefu's own events as a pending record (its `seq` still to set).
fn own_event(shop: &str, event: Event) -> Result<EventRecord, StorageError> {
    super::input::record(shop, &event, now_ms())
}

/// Fire due timers until `stop`: never before they are due.
pub fn spawn_timers(app: Arc<App>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let said = crate::app::said::Said::default();
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let storage = app.storage.clone();
            let fired = tokio::task::spawn_blocking(move || -> Result<usize, StorageError> {
                let now = chrono::Utc::now().timestamp();
                let due = storage.due_timers(now, 256)?;
                for t in &due {
                    let mut event = fired(t)?;
                    event.seq = storage.next_id()?;
                    storage.fire_timer(t, &event)?;
                }
                Ok(due.len())
            })
            .await;
            if let Ok(Ok(_)) = fired {
                said.worked("firing due timers");
            }
            match fired {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => {
                    metrics::counter!("kefu_timers_fired_total").increment(n as u64);
                    app.inbox.wake();
                }
                Ok(Err(e)) => said.failed("cannot fire due timers", &e),
                Err(_) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_event_seen_before_its_record_is_read_again_until_it_is_written() {
        // The record lands on the third read: found, not left for later.
        let mut reads = 0;
        let found = written(
            || {
                reads += 1;
                Ok::<_, ()>((reads >= 3).then_some(reads))
            },
            &[Duration::ZERO; 5],
        )
        .await;
        assert_eq!(found, Ok(Some(3)));
        assert_eq!(reads, 3);

        // A record that never comes (an entry cut short by a crash): one
        // read per wait and one more, then none.
        let mut reads = 0;
        let found = written(
            || {
                reads += 1;
                Ok::<Option<()>, ()>(None)
            },
            &UNWRITTEN.map(|_| Duration::ZERO),
        )
        .await;
        assert_eq!(found, Ok(None));
        assert_eq!(reads, UNWRITTEN.len() + 1);

        // A failed read is an error at once.
        let found = written(|| Err::<Option<()>, _>("down"), &[Duration::ZERO; 5]).await;
        assert_eq!(found, Err("down"));
    }
}
