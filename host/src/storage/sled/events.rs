//! The workflow's inbox, subject state, timers and actions in sled.
//!
//! An event's commit writes many keys in several trees (its decisions
//! and what they record, the subject's state, timers, actions, webhook
//! deliveries, the event itself). Like a decision with effects it is one
//! write under an intent, not a sled transaction (which would stall every
//! other writer): the intent holds each key's value before the commit,
//! the event record (carrying the commit's id) is written last but one,
//! and at open a leftover intent whose event does not carry its commit is
//! undone key by key. Its plain decisions go to the decision log's
//! segments first and count once the event record lists them
//! ([`beside_log`]).

use super::decisions::RevisitKeys;
use super::keys::{SEP, backend, decode, encode, ordered, shop_prefix, timed_key};
use super::{Failure, SledStorage};
use crate::storage::{
    ActionRecord, ActionStatus, Decision, Effects, EventCommit, EventRecord, EventStatus,
    EventStore, PendingRef, StorageError, TimerRecord,
};
use serde::{Deserialize, Serialize};

/// The trees an event's commit writes to.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum T {
    Decisions,
    Refunds,
    Revisits,
    RevisitIds,
    RevisitsDue,
    Events,
    Pending,
    Subjects,
    Timers,
    TimersDue,
    Actions,
    Outbox,
    /// The decision log's index by buyer and order (appended last: the
    /// names of this enum are kept in unfinished commits' undo records).
    DecisionSubjects,
}

/// What a commit is about to overwrite: each key's value before it.
#[derive(Debug, Serialize, Deserialize)]
struct Undo {
    commit: u64,
    event: Vec<u8>,
    before: Vec<(T, Vec<u8>, Option<Vec<u8>>)>,
}

type Write = (T, Vec<u8>, Option<Vec<u8>>);

/// An inbox entry's value: the event's shop, id and subject.
fn pending_value(e: &EventRecord) -> Result<Vec<u8>, StorageError> {
    encode(&PendingRef {
        seq: e.seq,
        shop: e.shop.clone(),
        id: e.id.clone(),
        subject: e.subject.clone(),
    })
}

/// `shop \0 id`
fn event_key(shop: &str, id: &str) -> Vec<u8> {
    let mut k = shop_prefix(shop);
    k.extend_from_slice(id.as_bytes());
    k
}

/// `shop \0 subject`
fn subject_key(shop: &str, subject: &str) -> Vec<u8> {
    event_key(shop, subject)
}

/// `shop \0 subject \0 seq`
fn by_subject_key(shop: &str, subject: &str, seq: u64) -> Vec<u8> {
    let mut k = subject_key(shop, subject);
    k.push(SEP);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// `shop \0 subject \0 name`
fn timer_key(shop: &str, subject: &str, name: &str) -> Vec<u8> {
    let mut k = subject_key(shop, subject);
    k.push(SEP);
    k.extend_from_slice(name.as_bytes());
    k
}

/// `due id`: the due index.
fn timer_due_key(t: &TimerRecord) -> Vec<u8> {
    let mut k = ordered(t.at).to_vec();
    k.extend_from_slice(&t.id.to_be_bytes());
    k
}

/// `shop \0 id`
fn action_key(shop: &str, id: u64) -> Vec<u8> {
    let mut k = shop_prefix(shop);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// What the decision log needs of the store: an entry an event commit
/// appended counts only if the event's record (the commit's mark) lists
/// it; and sled flushed before a segment's index says its entries count.
pub(super) fn beside_log(db: &sled::Db, events: &sled::Tree) -> super::log::Beside {
    let events = events.clone();
    let db = db.clone();
    super::log::Beside {
        keep: Box::new(move |d: &Decision| {
            let Some(id) = &d.event else {
                return Ok(true);
            };
            let Some(v) = events.get(event_key(&d.shop, id)).map_err(backend)? else {
                return Ok(false);
            };
            let e: EventRecord = decode(&v)?;
            Ok(e.decisions.iter().any(|r| r.id == d.id) || e.earlier_decisions.contains(&d.id))
        }),
        flush: Box::new(move || db.flush().map(|_| ()).map_err(backend)),
    }
}

impl SledStorage {
    fn tree(&self, t: T) -> &sled::Tree {
        match t {
            T::Decisions => &self.decisions,
            T::Refunds => &self.refunds,
            T::Revisits => &self.revisits,
            T::RevisitIds => &self.revisit_ids,
            T::RevisitsDue => &self.revisits_due,
            T::Events => &self.events,
            T::Pending => &self.events_pending,
            T::Subjects => &self.subjects,
            T::Timers => &self.timers,
            T::TimersDue => &self.timers_due,
            T::Actions => &self.actions,
            T::Outbox => &self.outbox,
            T::DecisionSubjects => &self.decision_subjects,
        }
    }

    /// The writes of one decision and its effects.
    fn decision_writes(
        d: &Decision,
        effects: &Effects,
        out: &mut Vec<Write>,
    ) -> Result<(), StorageError> {
        match effects {
            Effects::None => {}
            Effects::Refund(r) => {
                out.push((
                    T::Refunds,
                    timed_key(&r.shop, r.at_ms, r.id),
                    Some(encode(r)?),
                ));
            }
            Effects::Revisits(records) => {
                for r in records {
                    let keys = RevisitKeys::of(r);
                    let id = r.id.to_be_bytes().to_vec();
                    out.push((T::Revisits, keys.key.clone(), Some(encode(r)?)));
                    out.push((T::RevisitIds, id.clone(), Some(keys.key.clone())));
                    if let Some(due) = keys.due {
                        out.push((T::RevisitsDue, due, Some(id)));
                    }
                }
            }
        }
        for key in super::decisions::subject_keys(d) {
            out.push((T::DecisionSubjects, key, Some(Vec::new())));
        }
        out.push((
            T::Decisions,
            timed_key(&d.shop, d.at_ms, d.id),
            Some(encode(d)?),
        ));
        Ok(())
    }

    /// Put back what an unfinished commit overwrote.
    fn undo_commit(&self, undo: &Undo) -> Result<(), StorageError> {
        for (t, key, before) in undo.before.iter().rev() {
            let tree = self.tree(*t);
            match before {
                Some(v) => tree.insert(key.as_slice(), v.as_slice()),
                None => tree.remove(key.as_slice()),
            }
            .map_err(backend)?;
        }
        Ok(())
    }

    /// Settle one leftover commit: finished when its event carries it,
    /// else undone.
    fn settle_commit(&self, key: &[u8], undo: &Undo) -> Result<(), StorageError> {
        let done = match self.events.get(&undo.event).map_err(backend)? {
            Some(v) => {
                let e: EventRecord = decode(&v)?;
                if e.commit == undo.commit {
                    self.events_pending
                        .remove(e.seq.to_be_bytes())
                        .map_err(backend)?;
                }
                e.commit == undo.commit
            }
            None => false,
        };
        if !done {
            self.undo_commit(undo)?;
        }
        self.event_intents.remove(key).map_err(backend)?;
        Ok(())
    }

    /// At open: drop the inbox entries a crash left without their pending
    /// event (written before it, see `accept_event`); processed events'
    /// entries went with their commit.
    pub(super) fn repair_pending(&self) -> Result<(), StorageError> {
        let mut dropped = 0;
        for item in self.events_pending.iter() {
            let (seq, entry) = item.map_err(backend)?;
            let entry: PendingRef = decode(&entry)?;
            let keep = match self
                .events
                .get(event_key(&entry.shop, &entry.id))
                .map_err(backend)?
            {
                Some(v) => {
                    let e: EventRecord = decode(&v)?;
                    e.status == EventStatus::Pending && e.seq.to_be_bytes() == *seq
                }
                None => false,
            };
            if !keep {
                self.events_pending.remove(seq).map_err(backend)?;
                dropped += 1;
            }
        }
        if dropped > 0 {
            tracing::info!(dropped, "inbox entries of unacknowledged events dropped");
        }
        Ok(())
    }

    /// At open: settle every commit a crash cut short.
    pub(super) fn finish_commits(&self) -> Result<(), StorageError> {
        let mut settled = 0;
        for item in self.event_intents.iter() {
            let (key, value) = item.map_err(backend)?;
            self.settle_commit(&key, &decode(&value)?)?;
            settled += 1;
        }
        if settled > 0 {
            tracing::warn!(settled, "event commits cut short by a crash settled");
        }
        self.repair_pending()?;
        if settled > 0 {
            self.db.flush().map_err(backend)?;
        }
        Ok(())
    }
}

impl EventStore for SledStorage {
    fn accept_event(&self, r: &EventRecord) -> Result<Option<EventRecord>, StorageError> {
        let key = event_key(&r.shop, &r.id);
        if let Some(v) = self.events.get(&key).map_err(backend)? {
            return Ok(Some(decode(&v)?));
        }
        // The indexes first: a crash before the record leaves an index
        // entry without an event, which readers skip.
        let pending = r.seq.to_be_bytes();
        let by_subject = by_subject_key(&r.shop, &r.subject, r.seq);
        self.events_pending
            .insert(pending, pending_value(r)?)
            .map_err(backend)?;
        self.events_by_subject
            .insert(by_subject.as_slice(), r.id.as_bytes())
            .map_err(backend)?;
        let swapped = self
            .events
            .compare_and_swap(&key, None as Option<&[u8]>, Some(encode(r)?))
            .map_err(backend)?;
        match swapped {
            Ok(()) => Ok(None),
            Err(cas) => {
                self.events_pending.remove(pending).map_err(backend)?;
                self.events_by_subject.remove(by_subject).map_err(backend)?;
                cas.current.map(|v| decode(&v)).transpose()
            }
        }
    }

    fn event(&self, shop: &str, id: &str) -> Result<Option<EventRecord>, StorageError> {
        self.events
            .get(event_key(shop, id))
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn pending_events(&self, limit: usize) -> Result<Vec<PendingRef>, StorageError> {
        let mut out = Vec::new();
        for item in self.events_pending.iter().take(limit) {
            let (seq, entry) = item.map_err(backend)?;
            let mut entry: PendingRef = decode(&entry)?;
            entry.seq =
                u64::from_be_bytes(seq.as_ref().try_into().map_err(|_| {
                    StorageError::Corrupt("inbox key is not a sequence number".into())
                })?);
            out.push(entry);
        }
        Ok(out)
    }

    fn subject_events(
        &self,
        shop: &str,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StorageError> {
        let mut prefix = subject_key(shop, subject);
        prefix.push(SEP);
        let mut out = Vec::new();
        for item in self.events_by_subject.scan_prefix(prefix) {
            let (_, id) = item.map_err(backend)?;
            let id = String::from_utf8_lossy(&id);
            if let Some(e) = self.event(shop, &id)?
                && !out.iter().any(|o: &EventRecord| o.id == e.id)
            {
                out.push(e);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn subject_state(&self, shop: &str, subject: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .subjects
            .get(subject_key(shop, subject))
            .map_err(backend)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn commit_event(&self, c: &EventCommit) -> Result<(), StorageError> {
        let e = &c.event;
        let mut writes: Vec<Write> = Vec::new();
        // Plain decisions (most) go to the log's segments first: they
        // count once the event's record, written below, lists them.
        let mut logged = self.log.in_commit();
        for (d, effects) in &c.decisions {
            match effects {
                Effects::None => logged.append(d, &encode(d)?)?,
                _ => Self::decision_writes(d, effects, &mut writes)?,
            }
        }
        if let Some(state) = &c.state {
            writes.push((
                T::Subjects,
                subject_key(&e.shop, &e.subject),
                Some(state.as_bytes().to_vec()),
            ));
        }
        let names = c
            .timers_cancelled
            .iter()
            .map(|n| (n.as_str(), None))
            .chain(c.timers_set.iter().map(|t| (t.name.as_str(), Some(t))));
        for (name, set) in names {
            let key = timer_key(&e.shop, &e.subject, name);
            if let Some(old) = self.timers.get(&key).map_err(backend)? {
                let old: TimerRecord = decode(&old)?;
                writes.push((T::TimersDue, timer_due_key(&old), None));
                writes.push((T::Timers, key.clone(), None));
            }
            if let Some(t) = set {
                writes.push((T::Timers, key.clone(), Some(encode(t)?)));
                writes.push((T::TimersDue, timer_due_key(t), Some(key)));
            }
        }
        for a in &c.actions {
            writes.push((T::Actions, action_key(&a.shop, a.id), Some(encode(a)?)));
        }
        for d in &c.deliveries {
            writes.push((T::Outbox, d.key.as_bytes().to_vec(), Some(encode(d)?)));
        }
        let key = event_key(&e.shop, &e.id);
        writes.push((T::Events, key.clone(), Some(encode(e)?)));
        writes.push((T::Pending, e.seq.to_be_bytes().to_vec(), None));

        // What to put back: keys made of new ids (decisions, their
        // records, actions, deliveries) were absent; the event and its
        // inbox entry need nothing (the event is the commit's mark, and
        // until it is written both are as they were); the rest is read.
        let mut before = Vec::with_capacity(writes.len());
        for (t, k, _) in &writes {
            let old = match t {
                T::Events | T::Pending => continue,
                T::Decisions
                | T::Refunds
                | T::Revisits
                | T::RevisitIds
                | T::RevisitsDue
                | T::Actions
                | T::Outbox
                | T::DecisionSubjects => None,
                T::Subjects | T::Timers | T::TimersDue => {
                    self.tree(*t).get(k).map_err(backend)?.map(|v| v.to_vec())
                }
            };
            before.push((*t, k.clone(), old));
        }
        let undo = Undo {
            commit: e.commit,
            event: key,
            before,
        };
        let intent_key = e.commit.to_be_bytes();
        self.event_intents
            .insert(intent_key, encode(&undo)?)
            .map_err(backend)?;
        let written = (|| {
            for (i, (t, k, v)) in writes.iter().enumerate() {
                if i + 2 == writes.len() {
                    self.fail("before-event-commit")?;
                }
                let tree = self.tree(*t);
                match v {
                    Some(v) => tree.insert(k.as_slice(), v.as_slice()).map(|_| ()),
                    None => tree.remove(k.as_slice()).map(|_| ()),
                }
                .map_err(|e| (backend(e), Failure::Error))?;
            }
            Ok(())
        })();
        match written {
            Ok(()) => {
                logged.kept();
                self.event_intents.remove(intent_key).map_err(backend)?;
                for (d, _) in &c.decisions {
                    self.tally(d)?;
                }
                Ok(())
            }
            Err((e, Failure::Crash)) => Err(e),
            Err((e, Failure::Error)) => {
                if let Err(settle) = self.settle_commit(&intent_key, &undo) {
                    tracing::error!(error = %settle, "cannot undo a failed event commit; the next start will");
                }
                Err(e)
            }
        }
    }

    fn retry_event(
        &self,
        shop: &str,
        id: &str,
        seq: u64,
    ) -> Result<Option<EventRecord>, StorageError> {
        let key = event_key(shop, id);
        let Some(v) = self.events.get(&key).map_err(backend)? else {
            return Ok(None);
        };
        let mut e: EventRecord = decode(&v)?;
        if e.status != EventStatus::Failed {
            return Ok(Some(e));
        }
        e.status = EventStatus::Pending;
        e.seq = seq;
        // The entry first, as for a new event.
        self.events_pending
            .insert(seq.to_be_bytes(), pending_value(&e)?)
            .map_err(backend)?;
        self.events.insert(key, encode(&e)?).map_err(backend)?;
        Ok(Some(e))
    }

    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRecord>, StorageError> {
        let end = ordered(now.saturating_add(1));
        let mut out = Vec::new();
        for item in self.timers_due.range(..end.to_vec()) {
            let (due, key) = item.map_err(backend)?;
            match self.timers.get(&key).map_err(backend)? {
                Some(v) => {
                    let t: TimerRecord = decode(&v)?;
                    if timer_due_key(&t) == *due {
                        out.push(t);
                    } else {
                        self.timers_due.remove(due).map_err(backend)?;
                    }
                }
                None => {
                    self.timers_due.remove(due).map_err(backend)?;
                }
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn timers(&self, shop: &str, subject: &str) -> Result<Vec<TimerRecord>, StorageError> {
        let mut prefix = subject_key(shop, subject);
        prefix.push(SEP);
        self.timers
            .scan_prefix(prefix)
            .map(|item| decode(&item.map_err(backend)?.1))
            .collect()
    }

    fn fire_timer(&self, t: &TimerRecord, event: &EventRecord) -> Result<(), StorageError> {
        self.accept_event(event)?;
        let key = timer_key(&t.shop, &t.subject, &t.name);
        // Only this scheduling: the flow may have moved the timer since.
        let _ = self
            .timers
            .compare_and_swap(&key, Some(encode(t)?), None as Option<&[u8]>)
            .map_err(backend)?;
        self.timers_due.remove(timer_due_key(t)).map_err(backend)?;
        Ok(())
    }

    fn actions(
        &self,
        shop: &str,
        status: Option<ActionStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StorageError> {
        let start = action_key(shop, after.saturating_add(1));
        let mut end = shop_prefix(shop);
        end.push(0xff);
        let mut out = Vec::new();
        for item in self.actions.range(start..end) {
            let a: ActionRecord = decode(&item.map_err(backend)?.1)?;
            if status.is_none_or(|s| s == a.status) {
                out.push(a);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn action(&self, shop: &str, id: u64) -> Result<Option<ActionRecord>, StorageError> {
        self.actions
            .get(action_key(shop, id))
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn set_action_status(
        &self,
        shop: &str,
        id: u64,
        status: ActionStatus,
    ) -> Result<bool, StorageError> {
        let key = action_key(shop, id);
        let updated = self
            .actions
            .fetch_and_update(&key, |old| {
                let old = old?;
                // An unreadable record stays as it is.
                let Ok(mut a) = serde_json::from_slice::<ActionRecord>(old) else {
                    return Some(old.to_vec());
                };
                a.status = status;
                Some(serde_json::to_vec(&a).unwrap_or_else(|_| old.to_vec()))
            })
            .map_err(backend)?;
        Ok(updated.is_some())
    }

    fn decision_at(
        &self,
        shop: &str,
        at_ms: i64,
        id: u64,
    ) -> Result<Option<Decision>, StorageError> {
        match self
            .decisions
            .get(timed_key(shop, at_ms, id))
            .map_err(backend)?
        {
            Some(v) => decode(&v).map(Some),
            None => self.log.find(shop, at_ms, id),
        }
    }

    fn prune_events(&self, before_ms: i64) -> Result<usize, StorageError> {
        let mut pruned = 0;
        for item in self.events.iter() {
            let (key, v) = item.map_err(backend)?;
            let e: EventRecord = decode(&v)?;
            if e.status != EventStatus::Pending && e.received_ms < before_ms {
                self.events_by_subject
                    .remove(by_subject_key(&e.shop, &e.subject, e.seq))
                    .map_err(backend)?;
                self.events.remove(key).map_err(backend)?;
                pruned += 1;
            }
        }
        Ok(pruned)
    }
}
