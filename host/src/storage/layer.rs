//! A store in front of another: every capability passed through to the
//! store a [`Layer`] names for each call, after the layer has looked at
//! what the call is (which record, read or write). The server's store is
//! one ([`super::Reopening`]: sled opened again after an I/O error), and
//! so is the fault injector of tests and drills ([`super::Faults`]).

use super::events::{
    ActionRecord, ActionStatus, EventCommit, EventRecord, PendingRef, TimerRecord,
};
use super::{
    AuditEvent, AuditLog, CanaryRecord, Decision, DecisionLog, DecisionQuery, Delivery, Durable,
    Effects, EventStore, Ids, Outbox, OutboxStats, RefundRecord, RevisitRecord, RevisitStatus,
    RevisitStore, ShopRecord, Storage, StorageError, VersionRecord, VersionStore,
};
use crate::state::{StateError, StateScope, StateStore};
use crate::steps::Step;
use std::collections::HashSet;
use std::sync::Arc;

/// The kind of record a call reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Record {
    /// The decision log, its refund records and tallies.
    Decision,
    /// Plugin state.
    State,
    /// Revisits and the do-not-contact list.
    Revisit,
    /// The webhook outbox.
    Delivery,
    /// Versions, components, shop records and canaries.
    Version,
    /// The deploy audit.
    Audit,
    /// The workflow's events, timers and actions.
    Event,
    /// New record ids.
    Id,
    /// The store as a whole: flushes and probes.
    Store,
}

/// What a call does with its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Read,
    Write,
    /// Making writes durable.
    Flush,
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Record::Decision => "decision",
            Record::State => "state",
            Record::Revisit => "revisit",
            Record::Delivery => "delivery",
            Record::Version => "version",
            Record::Audit => "audit",
            Record::Event => "event",
            Record::Id => "id",
            Record::Store => "store",
        })
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::Read => "read",
            Op::Write => "write",
            Op::Flush => "flush",
        })
    }
}

/// What stands in front of a store.
pub trait Layer: Send + Sync {
    /// The store this call goes to.
    fn store(&self) -> Result<Arc<dyn Storage>, StorageError>;
    /// Before a call that does `op` with `record`: an error fails the
    /// call, and the store is not called.
    fn check(&self, _record: Record, _op: Op) -> Result<(), StorageError> {
        Ok(())
    }
    /// Open the store again (see [`Durable::reopen`]); by default, the
    /// store's own.
    fn reopen(&self) -> Result<bool, StorageError> {
        self.store()?.reopen()
    }
}

/// A store made of a [`Layer`] in front of another.
pub struct Layered<L>(pub L);

impl<L> std::ops::Deref for Layered<L> {
    type Target = L;
    fn deref(&self) -> &L {
        &self.0
    }
}

/// Check the call, then make it on the store the layer names.
macro_rules! pass {
    ($self:ident, $record:ident, $op:ident, $method:ident($($arg:expr),*)) => {{
        $self.0.check(Record::$record, Op::$op)?;
        $self.0.store()?.$method($($arg),*)
    }};
}

fn state_error(e: StorageError) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl<L: Layer> StateStore for Layered<L> {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        self.0.check(Record::State, Op::Read).map_err(state_error)?;
        self.0.store().map_err(state_error)?.get(scope, key)
    }
    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        self.0
            .check(Record::State, Op::Write)
            .map_err(state_error)?;
        self.0.store().map_err(state_error)?.set(scope, key, value)
    }
    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        self.0
            .check(Record::State, Op::Write)
            .map_err(state_error)?;
        self.0.store().map_err(state_error)?.delete(scope, key)
    }
    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        self.0.check(Record::State, Op::Read).map_err(state_error)?;
        self.0
            .store()
            .map_err(state_error)?
            .list_keys(scope, prefix, after, limit)
    }
}

impl<L: Layer> Ids for Layered<L> {
    fn next_id(&self) -> Result<u64, StorageError> {
        pass!(self, Id, Write, next_id())
    }
}

impl<L: Layer> Durable for Layered<L> {
    fn flush(&self) -> Result<(), StorageError> {
        pass!(self, Store, Flush, flush())
    }
    fn probe(&self) -> Result<(), StorageError> {
        pass!(self, Store, Flush, probe())
    }
    fn reopen(&self) -> Result<bool, StorageError> {
        self.0.reopen()
    }
}

impl<L: Layer> DecisionLog for Layered<L> {
    fn record_decision(&self, decision: &Decision, effects: &Effects) -> Result<(), StorageError> {
        if let Effects::Revisits(_) = effects {
            self.0.check(Record::Revisit, Op::Write)?;
        }
        pass!(self, Decision, Write, record_decision(decision, effects))
    }
    fn decisions(&self, query: &DecisionQuery) -> Result<Vec<Decision>, StorageError> {
        pass!(self, Decision, Read, decisions(query))
    }
    fn scan_decisions(
        &self,
        query: &DecisionQuery,
        visit: &mut dyn FnMut(Decision) -> bool,
    ) -> Result<(), StorageError> {
        pass!(self, Decision, Read, scan_decisions(query, visit))
    }
    fn prune_decisions(&self, before_ms: i64) -> Result<usize, StorageError> {
        pass!(self, Decision, Write, prune_decisions(before_ms))
    }
    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError> {
        pass!(self, Decision, Read, refunds(shop, limit))
    }
    fn orders_confirmed(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StorageError> {
        pass!(
            self,
            Decision,
            Read,
            orders_confirmed(shop, since_ms, until_ms)
        )
    }
    fn refunds_between(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<RefundRecord>, StorageError> {
        pass!(
            self,
            Decision,
            Read,
            refunds_between(shop, since_ms, until_ms, limit)
        )
    }
}

impl<L: Layer> RevisitStore for Layered<L> {
    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError> {
        pass!(self, Revisit, Write, put_revisits(records))
    }
    fn fire_revisits(
        &self,
        records: &[RevisitRecord],
        deliveries: &[Delivery],
    ) -> Result<(), StorageError> {
        self.0.check(Record::Delivery, Op::Write)?;
        pass!(self, Revisit, Write, fire_revisits(records, deliveries))
    }
    fn revisits(
        &self,
        shop: &str,
        status: Option<RevisitStatus>,
        limit: usize,
    ) -> Result<Vec<RevisitRecord>, StorageError> {
        pass!(self, Revisit, Read, revisits(shop, status, limit))
    }
    fn revisit(&self, id: u64) -> Result<Option<RevisitRecord>, StorageError> {
        pass!(self, Revisit, Read, revisit(id))
    }
    fn due_revisits(&self, now: i64, limit: usize) -> Result<Vec<RevisitRecord>, StorageError> {
        pass!(self, Revisit, Read, due_revisits(now, limit))
    }
    fn revisits_due_before(&self, before: i64) -> Result<u64, StorageError> {
        pass!(self, Revisit, Read, revisits_due_before(before))
    }
    fn set_do_not_contact(&self, shop: &str, customer: &str, on: bool) -> Result<(), StorageError> {
        pass!(self, Revisit, Write, set_do_not_contact(shop, customer, on))
    }
    fn is_do_not_contact(&self, shop: &str, customer: &str) -> Result<bool, StorageError> {
        pass!(self, Revisit, Read, is_do_not_contact(shop, customer))
    }
}

impl<L: Layer> Outbox for Layered<L> {
    fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StorageError> {
        pass!(self, Delivery, Write, put_deliveries(deliveries))
    }
    fn deliveries_ready(
        &self,
        now_ms: i64,
        per_shop: usize,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        pass!(
            self,
            Delivery,
            Read,
            deliveries_ready(now_ms, per_shop, limit)
        )
    }
    fn deliveries(&self, shop: &str) -> Result<Vec<Delivery>, StorageError> {
        pass!(self, Delivery, Read, deliveries(shop))
    }
    fn delivery(&self, key: &str) -> Result<Option<Delivery>, StorageError> {
        pass!(self, Delivery, Read, delivery(key))
    }
    fn remove_delivery(&self, key: &str) -> Result<(), StorageError> {
        pass!(self, Delivery, Write, remove_delivery(key))
    }
    fn outbox_stats(&self) -> Result<OutboxStats, StorageError> {
        pass!(self, Delivery, Read, outbox_stats())
    }
}

impl<L: Layer> VersionStore for Layered<L> {
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        pass!(self, Version, Write, put_component(digest, bytes))
    }
    fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        pass!(self, Version, Read, component(digest))
    }
    fn put_version(
        &self,
        shop: &str,
        step: Step,
        record: &VersionRecord,
    ) -> Result<(), StorageError> {
        pass!(self, Version, Write, put_version(shop, step, record))
    }
    fn versions(&self, shop: &str, step: Step) -> Result<Vec<VersionRecord>, StorageError> {
        pass!(self, Version, Read, versions(shop, step))
    }
    fn remove_versions(
        &self,
        shop: &str,
        step: Step,
        versions: &[u64],
    ) -> Result<(), StorageError> {
        pass!(self, Version, Write, remove_versions(shop, step, versions))
    }
    fn version_digests(&self) -> Result<HashSet<String>, StorageError> {
        pass!(self, Version, Read, version_digests())
    }
    fn remove_component(&self, digest: &str) -> Result<(), StorageError> {
        pass!(self, Version, Write, remove_component(digest))
    }
    fn set_active(&self, shop: &str, step: Step, version: u64) -> Result<(), StorageError> {
        pass!(self, Version, Write, set_active(shop, step, version))
    }
    fn active(&self, shop: &str, step: Step) -> Result<Option<u64>, StorageError> {
        pass!(self, Version, Read, active(shop, step))
    }
    fn put_shop_record(&self, record: &ShopRecord) -> Result<(), StorageError> {
        pass!(self, Version, Write, put_shop_record(record))
    }
    fn shop_record(&self, shop: &str) -> Result<Option<ShopRecord>, StorageError> {
        pass!(self, Version, Read, shop_record(shop))
    }
    fn set_canary(
        &self,
        shop: &str,
        step: Step,
        record: Option<&CanaryRecord>,
    ) -> Result<(), StorageError> {
        pass!(self, Version, Write, set_canary(shop, step, record))
    }
    fn canary(&self, shop: &str, step: Step) -> Result<Option<CanaryRecord>, StorageError> {
        pass!(self, Version, Read, canary(shop, step))
    }
}

impl<L: Layer> AuditLog for Layered<L> {
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StorageError> {
        pass!(self, Audit, Write, append_audit(event))
    }
    fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StorageError> {
        pass!(self, Audit, Read, audit(shop, limit))
    }
}

impl<L: Layer> EventStore for Layered<L> {
    fn accept_event(&self, record: &EventRecord) -> Result<Option<EventRecord>, StorageError> {
        pass!(self, Event, Write, accept_event(record))
    }
    fn accept_events(
        &self,
        records: &[EventRecord],
    ) -> Result<Vec<Option<EventRecord>>, StorageError> {
        pass!(self, Event, Write, accept_events(records))
    }
    fn event(&self, shop: &str, id: &str) -> Result<Option<EventRecord>, StorageError> {
        pass!(self, Event, Read, event(shop, id))
    }
    fn pending_events(&self, limit: usize) -> Result<Vec<PendingRef>, StorageError> {
        pass!(self, Event, Read, pending_events(limit))
    }
    fn subject_events(
        &self,
        shop: &str,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StorageError> {
        pass!(self, Event, Read, subject_events(shop, subject, limit))
    }
    fn subject_state(&self, shop: &str, subject: &str) -> Result<Option<String>, StorageError> {
        pass!(self, Event, Read, subject_state(shop, subject))
    }
    fn commit_event(&self, commit: &EventCommit) -> Result<(), StorageError> {
        // What the commit writes besides the event's own records.
        if !commit.decisions.is_empty() {
            self.0.check(Record::Decision, Op::Write)?;
        }
        if !commit.deliveries.is_empty() {
            self.0.check(Record::Delivery, Op::Write)?;
        }
        pass!(self, Event, Write, commit_event(commit))
    }
    fn retry_event(
        &self,
        shop: &str,
        id: &str,
        seq: u64,
    ) -> Result<Option<EventRecord>, StorageError> {
        pass!(self, Event, Write, retry_event(shop, id, seq))
    }
    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRecord>, StorageError> {
        pass!(self, Event, Read, due_timers(now, limit))
    }
    fn timers(&self, shop: &str, subject: &str) -> Result<Vec<TimerRecord>, StorageError> {
        pass!(self, Event, Read, timers(shop, subject))
    }
    fn fire_timer(&self, timer: &TimerRecord, event: &EventRecord) -> Result<(), StorageError> {
        pass!(self, Event, Write, fire_timer(timer, event))
    }
    fn actions(
        &self,
        shop: &str,
        status: Option<ActionStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StorageError> {
        pass!(self, Event, Read, actions(shop, status, after, limit))
    }
    fn action(&self, shop: &str, id: u64) -> Result<Option<ActionRecord>, StorageError> {
        pass!(self, Event, Read, action(shop, id))
    }
    fn set_action_status(
        &self,
        shop: &str,
        id: u64,
        status: ActionStatus,
    ) -> Result<bool, StorageError> {
        pass!(self, Event, Write, set_action_status(shop, id, status))
    }
    fn decision_at(
        &self,
        shop: &str,
        at_ms: i64,
        id: u64,
    ) -> Result<Option<Decision>, StorageError> {
        pass!(self, Decision, Read, decision_at(shop, at_ms, id))
    }
    fn prune_events(&self, before_ms: i64) -> Result<usize, StorageError> {
        pass!(self, Event, Write, prune_events(before_ms))
    }
}
