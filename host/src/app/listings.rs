//! What the API shows of stored records: its own types, so that the
//! stored form can change without changing the API (and the reverse).
//! Today each shows every field its record keeps.

use super::App;
use crate::bindings::types::{Channel, RefundDecision, RefundKind, RefundReason};
use crate::steps::Step;
use crate::storage::{
    Actor, AuditAction, AuditEvent, Decision, DecisionQuery, OutcomeResult, RefundRecord,
    RevisitOutcome, RevisitRecord, RevisitStatus, StorageError, VersionSource,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// A decision-log entry: one plugin call, its input and output as sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionView {
    pub id: u64,
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Step,
    /// SHA-256 of the component that decided.
    pub digest: String,
    /// Its version within the shop's step.
    pub version: u64,
    /// When it was logged, unix milliseconds.
    pub at_ms: i64,
    /// The time the plugin was given, unix seconds.
    pub now: i64,
    #[schema(value_type = Object)]
    pub input: Box<RawValue>,
    #[schema(value_type = Option<Object>)]
    pub output: Option<Box<RawValue>>,
    /// Why the call failed: `{code, message}`.
    #[schema(value_type = Option<Object>)]
    pub error: Option<crate::storage::DecisionError>,
    pub duration_us: u64,
    /// The customer was in the step's canary.
    pub canary: bool,
    /// The version called failed and this one answered: which and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<crate::storage::Fallback>,
    /// What the call read from its plugin state (replays see the same).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub state_reads: Vec<crate::storage::StateRead>,
    /// The buyer the call was about.
    pub customer: Option<String>,
    /// The order it was about, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
    /// What the plugin logged during the call: `{level, message}`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<crate::runtime::LogLine>,
}

impl From<Decision> for DecisionView {
    fn from(d: Decision) -> Self {
        let customer = d.customer_id();
        DecisionView {
            customer,
            order: d.order,
            logs: d.logs,
            id: d.id,
            shop: d.shop,
            step: d.step,
            digest: d.digest,
            version: d.version,
            at_ms: d.at_ms,
            now: d.now,
            input: d.input,
            output: d.output,
            error: d.error,
            duration_us: d.duration_us,
            canary: d.canary,
            fallback: d.fallback,
            state_reads: d.state_reads,
        }
    }
}

/// A refund decision kept for the shop.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RefundView {
    pub id: u64,
    pub shop: String,
    pub order_id: String,
    pub buyer_id: String,
    pub at_ms: i64,
    pub reason: RefundReason,
    pub kind: RefundKind,
    /// What the buyer asked for, fen.
    pub requested: u64,
    pub decision: RefundDecision,
    pub decision_id: u64,
}

impl From<RefundRecord> for RefundView {
    fn from(r: RefundRecord) -> Self {
        RefundView {
            id: r.id,
            shop: r.shop,
            order_id: r.order_id,
            buyer_id: r.buyer_id,
            at_ms: r.at_ms,
            reason: r.reason,
            kind: r.kind,
            requested: r.requested,
            decision: r.decision,
            decision_id: r.decision_id,
        }
    }
}

/// A planned revisit and what became of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RevisitView {
    pub id: u64,
    pub shop: String,
    pub customer_id: String,
    /// Unix seconds.
    pub due_at: i64,
    pub channel: Channel,
    pub purpose: String,
    pub message: String,
    pub max_attempts: u32,
    pub retry_after_hours: u32,
    pub status: RevisitStatus,
    /// The plan's decision-log entry.
    pub decision_id: u64,
    pub attempts_made: u32,
    /// Unix seconds.
    pub planned_at: i64,
    /// The complaint's cause, for complaint follow-ups.
    pub cause: Option<String>,
    /// The attempts' outcomes (回访记录), oldest first.
    pub outcomes: Vec<OutcomeView>,
}

/// One attempt's outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OutcomeView {
    /// Unix seconds.
    pub at: i64,
    pub result: OutcomeResult,
    pub satisfaction: Option<u8>,
    pub note: String,
    pub agent: String,
}

impl From<RevisitOutcome> for OutcomeView {
    fn from(o: RevisitOutcome) -> Self {
        OutcomeView {
            at: o.at,
            result: o.result,
            satisfaction: o.satisfaction,
            note: o.note,
            agent: o.agent,
        }
    }
}

impl From<RevisitRecord> for RevisitView {
    fn from(r: RevisitRecord) -> Self {
        RevisitView {
            id: r.id,
            shop: r.shop,
            customer_id: r.customer_id,
            due_at: r.due_at,
            channel: r.channel,
            purpose: r.purpose,
            message: r.message,
            max_attempts: r.max_attempts,
            retry_after_hours: r.retry_after_hours,
            status: r.status,
            decision_id: r.decision_id,
            attempts_made: r.attempts_made,
            planned_at: r.planned_at,
            cause: r.cause,
            outcomes: r.outcomes.into_iter().map(Into::into).collect(),
        }
    }
}

/// One event of the deploy audit.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditView {
    pub id: u64,
    pub at_ms: i64,
    pub shop: String,
    #[schema(value_type = Option<String>)]
    pub step: Option<Step>,
    pub action: AuditAction,
    pub version: Option<u64>,
    pub digest: Option<String>,
    pub source: VersionSource,
    pub actor: Actor,
    pub reason: String,
}

impl From<AuditEvent> for AuditView {
    fn from(e: AuditEvent) -> Self {
        AuditView {
            id: e.id,
            at_ms: e.at_ms,
            shop: e.shop,
            step: e.step,
            action: e.action,
            version: e.version,
            digest: e.digest,
            source: e.source,
            actor: e.actor,
            reason: e.reason,
        }
    }
}

fn views<R, V: From<R>>(records: Vec<R>) -> Vec<V> {
    records.into_iter().map(V::from).collect()
}

impl App {
    /// Decision-log entries of a shop, newest first.
    pub fn decisions(&self, query: &DecisionQuery) -> Result<Vec<DecisionView>, StorageError> {
        self.storage.decisions(query).map(views)
    }

    /// One decision-log entry of a shop, by its time and id.
    pub fn decision(
        &self,
        shop: &str,
        at_ms: i64,
        id: u64,
    ) -> Result<Option<DecisionView>, StorageError> {
        Ok(self.storage.decision_at(shop, at_ms, id)?.map(Into::into))
    }

    /// A shop's refund decisions, newest first.
    pub fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundView>, StorageError> {
        self.storage.refunds(shop, limit).map(views)
    }

    /// A shop's revisits, earliest due first.
    pub fn revisits(
        &self,
        shop: &str,
        status: Option<RevisitStatus>,
        limit: usize,
    ) -> Result<Vec<RevisitView>, StorageError> {
        self.storage.revisits(shop, status, limit).map(views)
    }

    /// The deploy audit, of one shop or all, newest first.
    pub fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditView>, StorageError> {
        self.storage.audit(shop, limit).map(views)
    }
}
