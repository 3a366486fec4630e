//! Durable state of the server, behind one narrow interface so that a
//! networked backend can replace the embedded one. Only this module
//! touches sled.
//!
//! What is stored: plugin key-value state (the WIT `state` import), the
//! decision log, refund records, planned revisits and the deploy audit.
//! Writes are buffered; [`Storage::flush`] makes everything before it
//! durable, and the server acknowledges nothing before that.

mod records;
mod sled;

pub use records::{
    AuditEvent, CallError as DecisionError, Decision, DecisionQuery, Delivery, RefundRecord,
    RevisitOutcome, RevisitRecord, VersionRecord,
};
pub use sled::SledStorage;

use crate::state::StateStore;
use crate::step::Step;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage failed: {0}")]
    Backend(String),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// Everything the server keeps. Implementations must keep shops apart.
pub trait Storage: StateStore + Send + Sync {
    /// A new unique, increasing id.
    fn next_id(&self) -> Result<u64, StorageError>;
    /// Append a decision-log entry (its `id` must come from `next_id`).
    fn record_decision(&self, decision: &Decision) -> Result<(), StorageError>;
    /// Decision-log entries matching `query`, newest first.
    fn decisions(&self, query: &DecisionQuery) -> Result<Vec<Decision>, StorageError>;
    /// Delete decision-log entries recorded before `before_ms`; how many.
    fn prune_decisions(&self, before_ms: i64) -> Result<usize, StorageError>;
    /// Keep a refund decision.
    fn put_refund(&self, record: &RefundRecord) -> Result<(), StorageError>;
    /// A shop's refund records, newest first.
    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError>;
    /// Keep new or changed revisits; a "planned" one is indexed by its due
    /// time, any other is not.
    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError>;
    /// A shop's revisits, earliest due first, optionally of one status.
    fn revisits(
        &self,
        shop: &str,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RevisitRecord>, StorageError>;
    /// One revisit by id.
    fn revisit(&self, id: u64) -> Result<Option<RevisitRecord>, StorageError>;
    /// Planned revisits due at or before `now`, earliest first (from the
    /// due-time index: no scan of the others).
    fn due_revisits(&self, now: i64, limit: usize) -> Result<Vec<RevisitRecord>, StorageError>;
    /// Queue webhook deliveries.
    fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StorageError>;
    /// Deliveries whose next try is at or before `now_ms`.
    fn deliveries_ready(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StorageError>;
    /// A delivery succeeded.
    fn remove_delivery(&self, key: &str) -> Result<(), StorageError>;
    /// Mark a customer do-not-contact (or not).
    fn set_do_not_contact(&self, shop: &str, customer: &str, on: bool) -> Result<(), StorageError>;
    fn is_do_not_contact(&self, shop: &str, customer: &str) -> Result<bool, StorageError>;
    /// Append to the deploy audit.
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StorageError>;
    /// Audit events, of one shop or all, newest first.
    fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StorageError>;
    /// Keep a component's bytes under their digest (idempotent).
    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// A component's bytes by digest.
    fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Record a version of a shop's step.
    fn put_version(
        &self,
        shop: &str,
        step: Step,
        record: &VersionRecord,
    ) -> Result<(), StorageError>;
    /// All versions of a shop's step, oldest first.
    fn versions(&self, shop: &str, step: Step) -> Result<Vec<VersionRecord>, StorageError>;
    /// Mark a version as the active one.
    fn set_active(&self, shop: &str, step: Step, version: u64) -> Result<(), StorageError>;
    /// The active version number, if any was ever set.
    fn active(&self, shop: &str, step: Step) -> Result<Option<u64>, StorageError>;
    /// Make every write so far durable.
    fn flush(&self) -> Result<(), StorageError>;
}
