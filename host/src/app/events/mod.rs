//! Workflows: a shop's marketplace events in, its flow and steps run in
//! order, timers and actions out. Events are accepted into a durable
//! inbox (`input`), processed one subject at a time by the worker
//! (`worker`, `process`), and what each made is kept in one commit,
//! written by the inbox's own threads (`writer`); the views here answer
//! the API (an event, the actions, a timeline).

pub mod input;
mod process;
pub mod simulate;
pub mod worker;
mod writer;

pub use process::{MAX_FLOW_CALLS, MAX_STEP_RUNS};

use super::App;
use super::quota::QuotaExceeded;
use super::registry::{Shop, now_ms};
use crate::steps::InputError;
use crate::storage::{
    ActionRecord, ActionStatus, DecisionError as CallError, DecisionRef, EventRecord, EventStatus,
    StorageError, TimerRecord,
};
use serde::Serialize;
use std::sync::Arc;

/// Why events were not taken.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid field `{path}`: {message}")]
    InvalidField { path: String, message: String },
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error("no event `{0}` in this shop")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An event and what became of it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `order:<id>` or `customer:<id>`.
    pub subject: String,
    /// When it happened, unix seconds.
    pub at: i64,
    /// Arrival order.
    pub seq: u64,
    pub status: EventStatus,
    #[schema(value_type = Option<Object>)]
    pub error: Option<CallError>,
    pub attempts: u32,
    pub received_ms: i64,
    pub processed_ms: Option<i64>,
    /// Decisions processing made: the flow's (`workflow`) and its steps'.
    pub decisions: Vec<DecisionRef>,
    /// Ids of the actions it queued.
    pub actions: Vec<u64>,
    /// Timers it set: name and due time.
    pub timers_set: Vec<(String, i64)>,
    pub timers_cancelled: Vec<String>,
}

impl From<EventRecord> for EventView {
    fn from(e: EventRecord) -> Self {
        EventView {
            id: e.id,
            kind: e.kind,
            subject: e.subject,
            at: e.at,
            seq: e.seq,
            status: e.status,
            error: e.error,
            attempts: e.attempts,
            received_ms: e.received_ms,
            processed_ms: e.processed_ms,
            decisions: e.decisions,
            actions: e.actions,
            timers_set: e.timers_set,
            timers_cancelled: e.timers_cancelled,
        }
    }
}

/// What became of one event of a request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub id: String,
    /// `accepted`, or `duplicate` when the id was seen before (`event`
    /// is then the first one's record).
    pub status: &'static str,
    pub event: EventView,
}

/// An action for the shop's integration.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActionView {
    pub id: u64,
    /// The same for every delivery of the action.
    pub idempotency_key: String,
    pub event_id: String,
    pub subject: String,
    /// `send-message`, `set-remark`, `merge-orders`, `hand-off`, `emit`.
    pub kind: String,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub at_ms: i64,
    pub status: ActionStatus,
}

impl From<ActionRecord> for ActionView {
    fn from(a: ActionRecord) -> Self {
        ActionView {
            id: a.id,
            idempotency_key: a.idempotency_key,
            event_id: a.event_id,
            subject: a.subject,
            kind: a.kind,
            data: a.data,
            at_ms: a.at_ms,
            status: a.status,
        }
    }
}

/// One line of a timeline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "entry", rename_all = "snake_case")]
pub enum TimelineEntry {
    Event(EventView),
    Decision {
        /// The event it was made for.
        event_id: String,
        id: u64,
        step: String,
        /// The plugin version that made it.
        version: u64,
        at_ms: i64,
        ok: bool,
        #[schema(value_type = Option<Object>)]
        output: Option<serde_json::Value>,
    },
    Action(ActionView),
    /// A timer set (and still waiting, or since fired or cancelled).
    Timer {
        event_id: String,
        name: String,
        due_at: i64,
        /// Still waiting.
        pending: bool,
    },
    Revisit(super::RevisitView),
}

/// A subject's history, in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub shop: String,
    pub subject: String,
    pub entries: Vec<TimelineEntry>,
}

impl App {
    /// Take `body` (one event, or an array of up to
    /// [`input::MAX_BATCH`]) into `shop`'s inbox; answers once every new
    /// one is durable. A known id is not taken again: its first record
    /// answers. Nothing is taken when any event is invalid.
    pub async fn accept_events(
        &self,
        shop: &Shop,
        body: &[u8],
    ) -> Result<Vec<Accepted>, EventError> {
        self.meter
            .shop(&shop.id)
            .check(&self.config.quotas, now_ms())?;
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| EventError::InvalidJson(e.to_string()))?;
        let (items, batch) = match value {
            serde_json::Value::Array(items) => (items, true),
            one => (vec![one], false),
        };
        if items.len() > input::MAX_BATCH {
            return Err(EventError::TooMany(format!(
                "{} events in one request, at most {} are allowed",
                items.len(),
                input::MAX_BATCH
            )));
        }
        if items.is_empty() {
            return Err(EventError::InvalidField {
                path: ".".into(),
                message: "no events".into(),
            });
        }
        let mut parsed = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let p = input::parse(item).map_err(|InputError { path, message }| {
                EventError::InvalidField {
                    path: match batch {
                        true => format!("[{i}].{path}"),
                        false => path,
                    },
                    message,
                }
            })?;
            parsed.push(p);
        }
        let storage = self.storage.clone();
        let shop_id = shop.id.clone();
        let answers = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            let mut records = Vec::with_capacity(parsed.len());
            for p in &parsed {
                let mut record = input::record(&shop_id, &p.event, now_ms())?;
                record.seq = storage.next_id()?;
                records.push(record);
            }
            // Together: a backend may write them as one.
            let seen = storage.accept_events(&records)?;
            let mut answers = Vec::with_capacity(parsed.len());
            for ((p, record), seen) in parsed.into_iter().zip(records).zip(seen) {
                answers.push(match seen {
                    None => {
                        // Counted as kept, whether or not the sender
                        // waits for the answer.
                        metrics::counter!("kefu_events_accepted_total").increment(1);
                        Accepted {
                            id: p.id,
                            status: "accepted",
                            event: record.into(),
                        }
                    }
                    Some(first) => Accepted {
                        id: p.id,
                        status: "duplicate",
                        event: first.into(),
                    },
                });
            }
            Ok(answers)
        })
        .await
        .map_err(|e| StorageError::Backend(e.to_string()))?
        .inspect_err(|e| self.committer.write_failed(e))?;
        self.durable().await?;
        self.inbox.wake();
        Ok(answers)
    }

    /// One event of `shop`.
    pub fn event(&self, shop: &str, id: &str) -> Result<EventView, EventError> {
        self.storage
            .event(shop, id)?
            .map(EventView::from)
            .ok_or_else(|| EventError::NotFound(id.into()))
    }

    /// Put a failed event back in the inbox, last in line.
    pub async fn retry_event(&self, shop: &str, id: &str) -> Result<EventView, EventError> {
        let current = self
            .storage
            .event(shop, id)?
            .ok_or_else(|| EventError::NotFound(id.into()))?;
        if current.status != EventStatus::Failed {
            return Err(EventError::Conflict(
                format!(
                    "event `{id}` is {:?}, only a failed event is retried",
                    current.status
                )
                .to_lowercase(),
            ));
        }
        let seq = self.storage.next_id()?;
        let retried = self
            .storage
            .retry_event(shop, id, seq)?
            .ok_or_else(|| EventError::NotFound(id.into()))?;
        self.durable().await?;
        self.inbox.wake();
        Ok(retried.into())
    }

    /// `shop`'s actions after `after`, optionally of one status.
    pub fn actions(
        &self,
        shop: &str,
        status: Option<ActionStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ActionView>, EventError> {
        Ok(self
            .storage
            .actions(shop, status, after, limit)?
            .into_iter()
            .map(ActionView::from)
            .collect())
    }

    /// A poller took an action: it is delivered.
    pub async fn ack_action(&self, shop: &str, id: u64) -> Result<ActionView, EventError> {
        if !self
            .storage
            .set_action_status(shop, id, ActionStatus::Delivered)?
        {
            return Err(EventError::NotFound(format!("action {id}")));
        }
        // Its webhook delivery, if any, is no longer needed.
        self.storage.remove_delivery(&format!("action-{id}"))?;
        self.durable().await?;
        let action = self
            .storage
            .action(shop, id)?
            .ok_or_else(|| EventError::NotFound(format!("action {id}")))?;
        Ok(action.into())
    }

    /// Everything that happened to a subject (`order:<id>` or
    /// `customer:<id>`), in order: each event, then the decisions,
    /// actions and timers it made; then the revisits planned for it.
    pub fn timeline(&self, shop: &str, subject: &str) -> Result<Timeline, EventError> {
        let storage = &self.storage;
        let events = storage.subject_events(shop, subject, 1000)?;
        let waiting: Vec<TimerRecord> = storage.timers(shop, subject)?;
        let mut entries = Vec::new();
        let mut decision_ids = std::collections::HashSet::new();
        for e in events {
            let refs = e.decisions.clone();
            let actions = e.actions.clone();
            let timers = e.timers_set.clone();
            let event_id = e.id.clone();
            entries.push(TimelineEntry::Event(e.into()));
            for d in refs {
                decision_ids.insert(d.id);
                let output = storage
                    .decision_at(shop, d.at_ms, d.id)?
                    .and_then(|full| full.output)
                    .and_then(|raw| serde_json::from_str(raw.get()).ok());
                entries.push(TimelineEntry::Decision {
                    event_id: event_id.clone(),
                    id: d.id,
                    step: d.step,
                    version: d.version,
                    at_ms: d.at_ms,
                    ok: d.ok,
                    output,
                });
            }
            for id in actions {
                if let Some(a) = storage.action(shop, id)? {
                    entries.push(TimelineEntry::Action(a.into()));
                }
            }
            for (name, due_at) in timers {
                let pending = waiting.iter().any(|t| t.name == name && t.at == due_at);
                entries.push(TimelineEntry::Timer {
                    event_id: event_id.clone(),
                    name,
                    due_at,
                    pending,
                });
            }
        }
        let customer = subject.strip_prefix("customer:");
        for r in storage.revisits(shop, None, 10_000)? {
            if decision_ids.contains(&r.decision_id) || customer == Some(r.customer_id.as_str()) {
                entries.push(TimelineEntry::Revisit(r.into()));
            }
        }
        Ok(Timeline {
            shop: shop.into(),
            subject: subject.into(),
            entries,
        })
    }

    /// The inbox worker and the timer clock.
    pub(super) fn start_events(self: &Arc<Self>, stop: Arc<std::sync::atomic::AtomicBool>) {
        worker::spawn(self.clone(), stop.clone());
        worker::spawn_timers(self.clone(), stop);
    }
}
