//! Durable state of the server, behind one narrow interface so that a
//! networked backend can replace the embedded one. Only this module
//! touches sled.
//!
//! What is stored: plugin key-value state (the WIT `state` import), the
//! decision log, refund records, planned revisits and the deploy audit.
//! Writes are buffered; [`Storage::flush`] makes everything before it
//! durable, and the server acknowledges nothing before that.

mod records;
mod sled_store;

pub use records::{
    AuditEvent, CallError as DecisionError, Decision, DecisionQuery, RefundRecord, RevisitRecord,
};
pub use sled_store::SledStorage;

use crate::state::StateStore;

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
    /// Keep planned revisits.
    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError>;
    /// A shop's planned revisits, earliest due first.
    fn revisits(&self, shop: &str, limit: usize) -> Result<Vec<RevisitRecord>, StorageError>;
    /// Append to the deploy audit.
    fn append_audit(&self, event: &AuditEvent) -> Result<(), StorageError>;
    /// Audit events, of one shop or all, newest first.
    fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StorageError>;
    /// Make every write so far durable.
    fn flush(&self) -> Result<(), StorageError>;
}
