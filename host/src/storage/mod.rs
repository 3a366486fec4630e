//! Durable state of the server, behind narrow traits, one per capability
//! (plugin state, the decision log, revisits, the webhook outbox, versions
//! and components, the deploy audit, the workflow's events), so that a
//! networked backend can implement them one by one. Only this module
//! touches sled; `nats` is that networked backend (several nodes on NATS
//! JetStream), each node reading from a sled view of its own.
//!
//! Writes are buffered; [`Durable::flush`] makes everything before it
//! durable, and the server acknowledges nothing before that. A write of
//! several records that belong together (a decision and what it records, a
//! revisit's move between indexes, revisits fired with their webhooks) is
//! atomic: after a crash, all of it is there or none.

#[cfg(test)]
mod conformance;
mod events;
mod faults;
mod layer;
mod nats;
mod records;
mod reopen;
mod sled;

pub use events::{
    ActionRecord, ActionStatus, DecisionRef, EventCommit, EventRecord, EventStatus, EventStore,
    PendingRef, TimerRecord,
};
pub use faults::Faults;
pub use layer::{Layer, Layered, Op, Record};
pub use nats::{Change, Migrated, NatsOptions, NatsStorage};
pub use records::{
    Actor, AuditAction, AuditEvent, CallError as DecisionError, CanaryRecord, Decision,
    DecisionQuery, Delivery, Fallback, OutcomeResult, RefundRecord, RevisitOutcome, RevisitRecord,
    RevisitStatus, ShopRecord, StateRead, VersionRecord, VersionSource,
};
pub use reopen::Reopening;
pub use sled::SledStorage;

use crate::state::StateStore;
use crate::steps::Step;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage failed: {0}")]
    Backend(String),
    /// Another process holds the store's lock.
    #[error("it is in use by another process (another kefu serving it?): {0}")]
    Locked(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// Writes were made but not confirmed durable in time: they may still
    /// appear once storage recovers.
    #[error(
        "not confirmed durable within {0:?}: storage is failing; what was written may appear once it recovers"
    )]
    NotConfirmed(std::time::Duration),
    /// Writes were made but the flush that was to make them durable
    /// failed: they may still appear once storage recovers.
    #[error("not made durable: {0}; what was written may appear once storage recovers")]
    NotDurable(String),
    /// Storage is known to be failing: nothing was written.
    #[error("storage cannot write now, nothing was recorded: {0}")]
    Failing(String),
}

/// New unique, increasing ids for records.
pub trait Ids: Send + Sync {
    fn next_id(&self) -> Result<u64, StorageError>;
}

/// Making writes durable.
pub trait Durable: Send + Sync {
    /// Make every write so far durable.
    fn flush(&self) -> Result<(), StorageError>;
    /// Whether a small write can be made durable now (checks the way back
    /// after a failure). By default, a flush.
    fn probe(&self) -> Result<(), StorageError> {
        self.flush()
    }
    /// Open the store again, as after a restart, when it cannot go on
    /// after an I/O error (sled 0.34 keeps failing once its log failed to
    /// write). True when it was reopened; by default it cannot be.
    fn reopen(&self) -> Result<bool, StorageError> {
        Ok(false)
    }
}

/// What a decision records besides its log entry; written with it in one
/// atomic write.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub enum Effects {
    /// Nothing else (greetings, confirmations, failed calls).
    #[default]
    None,
    /// An approved, rejected or escalated refund kept for the shop.
    Refund(RefundRecord),
    /// The revisits a plan made.
    Revisits(Vec<RevisitRecord>),
}

/// The decision log and the refund records it makes.
pub trait DecisionLog: Send + Sync {
    /// Append a decision-log entry (its `id` from [`Ids::next_id`]) and
    /// its effects, all or nothing.
    fn record_decision(&self, decision: &Decision, effects: &Effects) -> Result<(), StorageError>;
    /// Decision-log entries matching `query`, newest first.
    fn decisions(&self, query: &DecisionQuery) -> Result<Vec<Decision>, StorageError>;
    /// Visit the entries matching `query` (its limit aside) oldest first,
    /// one at a time, until `visit` answers false: a replay of 100,000
    /// holds one in memory, not all.
    fn scan_decisions(
        &self,
        query: &DecisionQuery,
        visit: &mut dyn FnMut(Decision) -> bool,
    ) -> Result<(), StorageError>;
    /// Delete decision-log entries recorded before `before_ms`; how many.
    fn prune_decisions(&self, before_ms: i64) -> Result<usize, StorageError>;
    /// A shop's refund records, newest first.
    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError>;
    /// How many orders `shop` confirmed (order-confirmation decisions
    /// that answered) in each hour of `[since_ms, until_ms)`: (hour start
    /// in unix ms, count), hours without any left out. A tally kept beside
    /// the log, so that a period's count reads one key per hour.
    fn orders_confirmed(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StorageError>;
    /// A shop's refund records of `[since_ms, until_ms)`, newest first.
    fn refunds_between(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<RefundRecord>, StorageError>;
}

/// Planned revisits, their due-time index and the do-not-contact list.
pub trait RevisitStore: Send + Sync {
    /// Keep new or changed revisits; a planned one is indexed by its due
    /// time, any other is not. Each record moves between indexes
    /// atomically.
    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError>;
    /// Keep revisits that came due together with the webhook deliveries
    /// they queue, atomically: a crash never leaves one without the other.
    fn fire_revisits(
        &self,
        records: &[RevisitRecord],
        deliveries: &[Delivery],
    ) -> Result<(), StorageError>;
    /// A shop's revisits, earliest due first, optionally of one status.
    fn revisits(
        &self,
        shop: &str,
        status: Option<RevisitStatus>,
        limit: usize,
    ) -> Result<Vec<RevisitRecord>, StorageError>;
    /// One revisit by id.
    fn revisit(&self, id: u64) -> Result<Option<RevisitRecord>, StorageError>;
    /// Planned revisits due at or before `now`, earliest first (from the
    /// due-time index: no scan of the others).
    fn due_revisits(&self, now: i64, limit: usize) -> Result<Vec<RevisitRecord>, StorageError>;
    /// How many planned revisits were due before `before` (from the
    /// due-time index: a count, nothing decoded).
    fn revisits_due_before(&self, before: i64) -> Result<u64, StorageError>;
    /// Mark a customer do-not-contact (or not).
    fn set_do_not_contact(&self, shop: &str, customer: &str, on: bool) -> Result<(), StorageError>;
    fn is_do_not_contact(&self, shop: &str, customer: &str) -> Result<bool, StorageError>;
}

/// Webhook deliveries waiting to succeed.
pub trait Outbox: Send + Sync {
    /// Queue (or update) deliveries.
    fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StorageError>;
    /// Live (not dead-lettered) deliveries whose next try is at or before
    /// `now_ms`, at most `per_shop` of any one shop (so one shop's backlog
    /// never hides another's) and `limit` in all.
    fn deliveries_ready(
        &self,
        now_ms: i64,
        per_shop: usize,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError>;
    /// Every queued delivery of `shop`, live and dead-lettered.
    fn deliveries(&self, shop: &str) -> Result<Vec<Delivery>, StorageError>;
    /// One delivery by key.
    fn delivery(&self, key: &str) -> Result<Option<Delivery>, StorageError>;
    /// A delivery succeeded.
    fn remove_delivery(&self, key: &str) -> Result<(), StorageError>;
    /// The outbox in figures (a scan of it: for gauges, not requests).
    fn outbox_stats(&self) -> Result<OutboxStats, StorageError>;
}

/// The webhook outbox in figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Deliveries still being tried.
    pub queued: u64,
    /// Deliveries given up on (dead letters).
    pub dead: u64,
    /// When the oldest delivery still being tried was queued, unix ms
    /// (those queued by builds that did not record it are left out).
    pub oldest_queued_ms: Option<i64>,
}

/// Versions of each shop's steps and the components they run.
pub trait VersionStore: Send + Sync {
    /// Keep a component's bytes under their digest (idempotent, durable
    /// when it returns).
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// A component's bytes by digest.
    fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// The bytes of a component a version names: its absence is a
    /// corrupt store.
    fn version_component(&self, digest: &str) -> Result<Vec<u8>, StorageError> {
        self.component(digest)?
            .ok_or_else(|| StorageError::Corrupt(format!("component {digest} is missing")))
    }
    /// Record a version of a shop's step.
    fn put_version(
        &self,
        shop: &str,
        step: Step,
        record: &VersionRecord,
    ) -> Result<(), StorageError>;
    /// All versions of a shop's step, oldest first.
    fn versions(&self, shop: &str, step: Step) -> Result<Vec<VersionRecord>, StorageError>;
    /// Forget versions of a shop's step (kept no longer; durable with the
    /// next flush).
    fn remove_versions(&self, shop: &str, step: Step, versions: &[u64])
    -> Result<(), StorageError>;
    /// The digest of every component any version of any shop names.
    fn version_digests(&self) -> Result<std::collections::HashSet<String>, StorageError>;
    /// Forget a component's bytes (no version names it any more).
    fn remove_component(&self, digest: &str) -> Result<(), StorageError>;
    /// Mark a version as the active one.
    fn set_active(&self, shop: &str, step: Step, version: u64) -> Result<(), StorageError>;
    /// The active version number, if any was ever set.
    fn active(&self, shop: &str, step: Step) -> Result<Option<u64>, StorageError>;
    /// Keep what a shop's last good `shop.toml` said, so that the shop
    /// can start on its stored versions while its folder is broken.
    fn put_shop_record(&self, record: &ShopRecord) -> Result<(), StorageError>;
    /// What the shop's last good `shop.toml` said, if it ever loaded.
    fn shop_record(&self, shop: &str) -> Result<Option<ShopRecord>, StorageError>;
    /// Keep (or, with `None`, end) the canary of a shop's step.
    fn set_canary(
        &self,
        shop: &str,
        step: Step,
        record: Option<&CanaryRecord>,
    ) -> Result<(), StorageError>;
    /// The canary of a shop's step, if one runs.
    fn canary(&self, shop: &str, step: Step) -> Result<Option<CanaryRecord>, StorageError>;
}

/// The deploy audit.
pub trait AuditLog: Send + Sync {
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StorageError>;
    /// Audit events, of one shop or all, newest first.
    fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StorageError>;
}

/// Every capability the server keeps: what `kefu serve` opens. Any type
/// with them all is one.
pub trait Storage:
    StateStore
    + Ids
    + Durable
    + DecisionLog
    + RevisitStore
    + Outbox
    + VersionStore
    + AuditLog
    + EventStore
{
}

impl<T> Storage for T where
    T: StateStore
        + Ids
        + Durable
        + DecisionLog
        + RevisitStore
        + Outbox
        + VersionStore
        + AuditLog
        + EventStore
{
}
