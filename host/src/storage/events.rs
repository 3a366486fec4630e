//! The workflow's records and their store: each shop's inbox of events,
//! what the flow keeps per subject, its timers and the actions it asked
//! for. Processing an event and everything it records is one atomic
//! commit ([`EventStore::commit_event`]).

use super::{Decision, Delivery, Effects, StorageError, records::CallError};
use serde::{Deserialize, Serialize};

/// Where an event stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// In the inbox, waiting for its turn.
    Pending,
    /// The flow handled it; its effects are recorded.
    Processed,
    /// The flow could not handle it (the reason is kept); retry it
    /// through the API.
    Failed,
}

/// A step decision made while processing an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DecisionRef {
    pub id: u64,
    /// The step, `workflow` for the flow's own calls.
    pub step: String,
    pub version: u64,
    /// When it was logged, unix ms (with `id`, its key in the log).
    pub at_ms: i64,
    /// Whether the plugin answered.
    pub ok: bool,
}

/// One event of a shop's inbox, with what became of it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub shop: String,
    /// The sender's id (the host's for timers).
    pub id: String,
    /// Arrival order across the server.
    pub seq: u64,
    /// `order.paid`, `timer.fired`...
    pub kind: String,
    /// `order:<id>` or `customer:<id>`.
    pub subject: String,
    /// When it happened, unix seconds.
    pub at: i64,
    /// When it was accepted, unix ms.
    pub received_ms: i64,
    /// The event as the flow gets it (the WIT `event` record, JSON).
    pub event: String,
    pub status: EventStatus,
    /// Why it failed.
    pub error: Option<CallError>,
    /// Times it was processed (retries count).
    pub attempts: u32,
    /// When it was last processed, unix ms.
    pub processed_ms: Option<i64>,
    /// The decisions processing made, in order.
    pub decisions: Vec<DecisionRef>,
    /// The ids of decisions earlier tries made (a failed try keeps them):
    /// with `decisions`, every entry of the log this event made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_decisions: Vec<u64>,
    /// The actions it queued (ids in the shop's action list).
    pub actions: Vec<u64>,
    /// Timers it set (name, due) and cancelled (name).
    pub timers_set: Vec<(String, i64)>,
    pub timers_cancelled: Vec<String>,
    /// The commit that recorded its processing (0: none yet).
    pub commit: u64,
    /// Timers between it and an event from outside: 0 for a sender's
    /// event, one more for each `timer.fired` in the chain.
    #[serde(default)]
    pub chain: u32,
}

/// A pending event's place in its inbox: enough to choose what to
/// process next without reading the event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRef {
    /// Its place in line.
    #[serde(skip)]
    pub seq: u64,
    pub shop: String,
    pub id: String,
    pub subject: String,
}

impl EventRecord {
    /// A new event, pending, with nothing made yet; its `seq` is set when
    /// it joins the inbox.
    pub fn pending(
        shop: &str,
        id: &str,
        kind: &str,
        subject: &str,
        at: i64,
        received_ms: i64,
        event: String,
    ) -> EventRecord {
        EventRecord {
            shop: shop.into(),
            id: id.into(),
            seq: 0,
            kind: kind.into(),
            subject: subject.into(),
            at,
            received_ms,
            event,
            status: EventStatus::Pending,
            error: None,
            attempts: 0,
            processed_ms: None,
            decisions: Vec::new(),
            earlier_decisions: Vec::new(),
            actions: Vec::new(),
            timers_set: Vec::new(),
            timers_cancelled: Vec::new(),
            commit: 0,
            chain: 0,
        }
    }
}

/// A timer of a subject.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimerRecord {
    /// Unique per scheduling: the fired event's id is made of it.
    pub id: u64,
    pub shop: String,
    pub subject: String,
    pub name: String,
    /// Due, unix seconds.
    pub at: i64,
    pub payload: String,
    /// The event that scheduled it.
    pub set_by: String,
    /// The chain of the event that scheduled it, plus one.
    #[serde(default)]
    pub chain: u32,
}

/// Where an action stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Waiting for the webhook or a poller.
    Pending,
    /// The webhook took it, or a poller acknowledged it.
    Delivered,
    /// The webhook kept failing (see `/webhooks`).
    Dead,
}

/// An action the flow asked for, for the shop's integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub id: u64,
    pub shop: String,
    /// `<event id>/<n>`: the same for every delivery of this action.
    pub idempotency_key: String,
    pub event_id: String,
    pub subject: String,
    /// `send-message`, `set-remark`, `merge-orders`, `hand-off`, `emit`.
    pub kind: String,
    /// The action's data (the WIT record, JSON).
    pub data: serde_json::Value,
    pub at_ms: i64,
    pub status: ActionStatus,
}

/// Everything processing one event records, at once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EventCommit {
    /// The event as it ends (status, decisions, actions, `commit`).
    pub event: EventRecord,
    /// Decisions with their effects (refunds, revisits).
    pub decisions: Vec<(Decision, Effects)>,
    /// What the flow keeps for the subject now (none: unchanged).
    pub state: Option<String>,
    pub timers_set: Vec<TimerRecord>,
    pub timers_cancelled: Vec<String>,
    pub actions: Vec<ActionRecord>,
    /// Webhook deliveries of the actions.
    pub deliveries: Vec<Delivery>,
}

/// The workflow's inbox, subject state, timers and actions.
pub trait EventStore: Send + Sync {
    /// Keep a new event as pending; when its id is already known, keep
    /// nothing and answer the record there is.
    fn accept_event(&self, record: &EventRecord) -> Result<Option<EventRecord>, StorageError>;
    /// [`EventStore::accept_event`] of each, in order (a backend may
    /// write them together).
    fn accept_events(
        &self,
        records: &[EventRecord],
    ) -> Result<Vec<Option<EventRecord>>, StorageError> {
        records.iter().map(|r| self.accept_event(r)).collect()
    }
    /// One event by its id.
    fn event(&self, shop: &str, id: &str) -> Result<Option<EventRecord>, StorageError>;
    /// The inbox: pending events in arrival order, at most `limit`. An
    /// entry may name an event being written now, or one a crash cut
    /// short (gone at the next open): read the event before processing.
    fn pending_events(&self, limit: usize) -> Result<Vec<PendingRef>, StorageError>;
    /// A subject's events in arrival order, at most `limit`.
    fn subject_events(
        &self,
        shop: &str,
        subject: &str,
        limit: usize,
    ) -> Result<Vec<EventRecord>, StorageError>;
    /// What the flow keeps for a subject.
    fn subject_state(&self, shop: &str, subject: &str) -> Result<Option<String>, StorageError>;
    /// Record an event's processing and all it made, all or nothing
    /// across a crash.
    fn commit_event(&self, commit: &EventCommit) -> Result<(), StorageError>;
    /// Put a failed event back in the inbox, last in line (as `seq`).
    fn retry_event(
        &self,
        shop: &str,
        id: &str,
        seq: u64,
    ) -> Result<Option<EventRecord>, StorageError>;
    /// Timers due at or before `now`, earliest first.
    fn due_timers(&self, now: i64, limit: usize) -> Result<Vec<TimerRecord>, StorageError>;
    /// A subject's timers.
    fn timers(&self, shop: &str, subject: &str) -> Result<Vec<TimerRecord>, StorageError>;
    /// Turn a due timer into its `timer.fired` event, atomically: after a
    /// crash, either the timer is still there (and the event's id, made
    /// of the timer's, is new) or the event is in the inbox.
    fn fire_timer(&self, timer: &TimerRecord, event: &EventRecord) -> Result<(), StorageError>;
    /// A shop's actions in id order after `after`, optionally of one
    /// status, at most `limit`.
    fn actions(
        &self,
        shop: &str,
        status: Option<ActionStatus>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<ActionRecord>, StorageError>;
    fn action(&self, shop: &str, id: u64) -> Result<Option<ActionRecord>, StorageError>;
    /// Set an action's status; false when there is no such action.
    fn set_action_status(
        &self,
        shop: &str,
        id: u64,
        status: ActionStatus,
    ) -> Result<bool, StorageError>;
    /// One decision-log entry by its key.
    fn decision_at(
        &self,
        shop: &str,
        at_ms: i64,
        id: u64,
    ) -> Result<Option<Decision>, StorageError>;
    /// Forget processed and failed events received before `before_ms`
    /// (their ids may then be used again); how many.
    fn prune_events(&self, before_ms: i64) -> Result<usize, StorageError>;
}
