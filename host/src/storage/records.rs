//! What the storage keeps, as serializable records.

use crate::step::Step;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

/// The error of a failed plugin call, as logged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallError {
    pub code: String,
    pub message: String,
}

/// One plugin call in the decision log. Input and output are kept as the
/// JSON text they were, not re-encoded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Decision {
    pub id: u64,
    pub shop: String,
    pub step: Step,
    /// SHA-256 of the plugin component that decided.
    pub digest: String,
    /// Version number of the plugin within the shop's step (0: bundled).
    pub version: u64,
    /// When the call was logged, unix milliseconds.
    pub at_ms: i64,
    /// The time the plugin was given (unix seconds): replaying the call
    /// with this time and input gives the same output.
    pub now: i64,
    pub input: Box<RawValue>,
    pub output: Option<Box<RawValue>>,
    pub error: Option<CallError>,
    pub duration_us: u64,
}

/// Which decisions to list.
#[derive(Clone, Debug, Default)]
pub struct DecisionQuery {
    pub shop: String,
    pub step: Option<Step>,
    /// Inclusive lower bound, unix milliseconds.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, unix milliseconds.
    pub until_ms: Option<i64>,
    pub limit: usize,
}

/// A refund decision kept for the shop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub id: u64,
    pub shop: String,
    pub order_id: String,
    pub buyer_id: String,
    pub at_ms: i64,
    /// The request's reason, kind and amount as the plugin saw them.
    pub reason: Value,
    pub kind: Value,
    pub requested: u64,
    /// The decision: outcome, amount, return and message.
    pub decision: Value,
    /// Decision-log entry that made it.
    pub decision_id: u64,
}

/// A revisit planned by the revisit planner, and what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisitRecord {
    pub id: u64,
    pub shop: String,
    pub customer_id: String,
    pub due_at: i64,
    pub channel: Value,
    pub purpose: String,
    pub message: String,
    pub max_attempts: u32,
    pub retry_after_hours: u32,
    /// "planned" (waiting for its time), "due" (its time came: an agent or
    /// the shop's webhook makes it), "done", "unreachable", "cancelled".
    pub status: String,
    pub decision_id: u64,
    /// Attempts made so far (outcomes recorded).
    #[serde(default)]
    pub attempts_made: u32,
    /// When it was planned, unix seconds.
    #[serde(default)]
    pub planned_at: i64,
    /// The complaint's cause, for complaint follow-ups.
    #[serde(default)]
    pub cause: Option<String>,
    /// Outcomes recorded by agents (回访记录), oldest first.
    #[serde(default)]
    pub outcomes: Vec<RevisitOutcome>,
}

/// One attempt's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RevisitOutcome {
    /// unix seconds
    pub at: i64,
    /// "reached", "no-answer", "refused" or "wrong-number".
    pub result: String,
    /// 1 to 5, when the customer was reached and said.
    pub satisfaction: Option<u8>,
    pub note: String,
    pub agent: String,
}

/// A webhook delivery waiting to succeed (the outbox).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// "revisit-<id>-<attempt>": the same for every retry of one firing.
    pub key: String,
    pub shop: String,
    pub url: String,
    pub body: String,
    pub tries: u32,
    /// unix milliseconds of the next try
    pub next_try_ms: i64,
    pub last_error: Option<String>,
}

/// One event of the deploy audit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: u64,
    pub at_ms: i64,
    pub shop: String,
    pub step: Option<Step>,
    /// "activated", "rejected", "rolled-back", "shop-loaded", "shop-rejected"...
    pub action: String,
    pub version: Option<u64>,
    pub digest: Option<String>,
    /// "file", "api", "bundled" or "startup".
    pub source: String,
    pub actor: String,
    pub reason: String,
}

/// One version of a shop's step: which component, with which config.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// 1, 2, 3... per shop and step.
    pub version: u64,
    /// SHA-256 of the component; its bytes are kept under it.
    pub digest: String,
    /// The plugin config of this version (JSON object text).
    pub config_json: String,
    /// "bundled", "file" or "api".
    pub source: String,
    /// The file it came from, for file versions.
    pub path: Option<String>,
    /// Instances are reused between calls (else a fresh one per call).
    #[serde(default)]
    pub reuse: bool,
    /// Who deployed it ("file-watcher", "startup", "admin").
    pub actor: String,
    pub at_ms: i64,
}
