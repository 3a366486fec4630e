//! Every write the NATS backend makes, as one message of the ops stream:
//! each node applies the stream, in its order, to a local view (a sled
//! store), so that every node reads what every node wrote, and a write
//! whose outcome depends on what is there (a state quota, an event id
//! seen before, a revisit still planned) is judged the same way on every
//! node — by the stream's order, not by which node wrote it.

use crate::state::{StateError, StateScope, StateStore};
use crate::steps::Step;
use crate::storage::events::{ActionStatus, EventCommit, EventRecord, TimerRecord};
use crate::storage::{
    AuditEvent, AuditLog, CanaryRecord, Decision, DecisionLog, Delivery, Effects, EventStore,
    Outbox, RevisitRecord, RevisitStore, ShopRecord, SledStorage, StorageError, VersionRecord,
    VersionStore,
};
use serde::{Deserialize, Serialize};

/// One write, as the stream carries it.
#[derive(Debug, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum buffers its content, and
// the decision's input and output (raw JSON) cannot come out of a buffer.
#[serde(rename_all = "snake_case")]
pub enum Op {
    StateSet {
        shop: String,
        plugin: String,
        key: String,
        value: String,
    },
    StateDelete {
        shop: String,
        plugin: String,
        key: String,
    },
    Decision {
        decision: Decision,
        effects: Effects,
    },
    PruneDecisions {
        before_ms: i64,
    },
    PutRevisits {
        records: Vec<RevisitRecord>,
    },
    FireRevisits {
        records: Vec<RevisitRecord>,
        deliveries: Vec<Delivery>,
    },
    DoNotContact {
        shop: String,
        customer: String,
        on: bool,
    },
    PutDeliveries {
        deliveries: Vec<Delivery>,
    },
    RemoveDelivery {
        key: String,
    },
    PutVersion {
        shop: String,
        step: Step,
        record: VersionRecord,
    },
    RemoveVersions {
        shop: String,
        step: Step,
        versions: Vec<u64>,
    },
    SetActive {
        shop: String,
        step: Step,
        version: u64,
    },
    PutShopRecord {
        record: ShopRecord,
    },
    SetCanary {
        shop: String,
        step: Step,
        record: Option<CanaryRecord>,
    },
    Audit {
        event: AuditEvent,
    },
    AcceptEvent {
        record: EventRecord,
    },
    CommitEvent {
        commit: EventCommit,
    },
    RetryEvent {
        shop: String,
        id: String,
        seq: u64,
    },
    FireTimer {
        timer: TimerRecord,
        event: EventRecord,
    },
    SetActionStatus {
        shop: String,
        id: u64,
        status: ActionStatus,
    },
    PruneEvents {
        before_ms: i64,
    },
    /// One record of a sled store copied as it was (`kefu migrate`), key
    /// and value in hex.
    Import {
        tree: String,
        key: String,
        value: String,
    },
    /// Several ops in one message (the writes of one group commit, a
    /// batch of events): one round trip and one fsync for them all,
    /// applied in order.
    Batch {
        ops: Vec<Op>,
    },
}

/// [`Op::Decision`] encoded from borrowed records: the same JSON, without
/// copying the decision first (the hot path of every answer).
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionRef<'a> {
    Decision {
        decision: &'a Decision,
        effects: &'a Effects,
    },
}

/// What applying an op answered, for the node that wrote it.
#[derive(Debug)]
pub enum Outcome {
    Done,
    Bool(bool),
    Count(usize),
    Event(Option<Box<EventRecord>>),
    /// A state write the view refused (too large, over the quota).
    State(StateError),
    /// A batch's ops, in order.
    Many(Vec<Result<Outcome, StorageError>>),
}

/// A change other parts of a node follow (the deploy follower, the
/// workflow inbox).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// What a shop's step runs (its active version or canary) changed.
    Step { shop: String, step: Step },
    /// An event came into a shop's inbox.
    Event,
}

impl Op {
    /// The stream subject's last token: what kind of write it is.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::StateSet { .. } | Op::StateDelete { .. } => "state",
            Op::Decision { .. } | Op::PruneDecisions { .. } => "decision",
            Op::PutRevisits { .. } | Op::FireRevisits { .. } | Op::DoNotContact { .. } => "revisit",
            Op::PutDeliveries { .. } | Op::RemoveDelivery { .. } => "delivery",
            Op::PutVersion { .. }
            | Op::RemoveVersions { .. }
            | Op::SetActive { .. }
            | Op::PutShopRecord { .. }
            | Op::SetCanary { .. } => "version",
            Op::Audit { .. } => "audit",
            Op::AcceptEvent { .. }
            | Op::CommitEvent { .. }
            | Op::RetryEvent { .. }
            | Op::FireTimer { .. }
            | Op::SetActionStatus { .. }
            | Op::PruneEvents { .. } => "event",
            Op::Batch { .. } => "batch",
            Op::Import { .. } => "import",
        }
    }

    /// The changes a node follows once the op is applied.
    pub fn changes(&self) -> Vec<Change> {
        match self {
            Op::Batch { ops } => {
                let mut all: Vec<Change> = ops.iter().flat_map(Op::changes).collect();
                all.dedup();
                all
            }
            op => op.change().into_iter().collect(),
        }
    }

    fn change(&self) -> Option<Change> {
        match self {
            Op::SetActive { shop, step, .. } | Op::SetCanary { shop, step, .. } => {
                Some(Change::Step {
                    shop: shop.clone(),
                    step: *step,
                })
            }
            Op::AcceptEvent { .. } | Op::RetryEvent { .. } | Op::FireTimer { .. } => {
                Some(Change::Event)
            }
            _ => None,
        }
    }

    /// Apply the op to a node's view. `again`: the op may have been
    /// applied already (the first one after a restart: the view keeps
    /// which op it applied last in the same store, but not atomically
    /// with every write), so one that is not idempotent looks first.
    pub fn apply(self, view: &SledStorage, again: bool) -> Result<Outcome, StorageError> {
        Ok(match self {
            Op::StateSet {
                shop,
                plugin,
                key,
                value,
            } => match view.set(&StateScope { shop, plugin }, &key, &value) {
                Ok(()) => Outcome::Done,
                Err(StateError::Unavailable(e)) => return Err(StorageError::Backend(e)),
                Err(e) => Outcome::State(e),
            },
            Op::StateDelete { shop, plugin, key } => {
                match view.delete(&StateScope { shop, plugin }, &key) {
                    Ok(there) => Outcome::Bool(there),
                    Err(StateError::Unavailable(e)) => return Err(StorageError::Backend(e)),
                    Err(e) => Outcome::State(e),
                }
            }
            Op::Decision { decision, effects } => {
                // The hour tallies are added to: a decision applied twice
                // would count twice.
                if again
                    && view
                        .decision_at(&decision.shop, decision.at_ms, decision.id)?
                        .is_some()
                {
                    return Ok(Outcome::Done);
                }
                view.record_decision(&decision, &effects)?;
                Outcome::Done
            }
            Op::PruneDecisions { before_ms } => Outcome::Count(view.prune_decisions(before_ms)?),
            Op::PutRevisits { records } => {
                view.put_revisits(&records)?;
                Outcome::Done
            }
            Op::FireRevisits {
                records,
                deliveries,
            } => {
                // Fired once: a node that took over the scheduler may fire
                // what the one before it fired just before it died.
                for r in &records {
                    if let Some(now) = view.revisit(r.id)?
                        && now.status != crate::storage::RevisitStatus::Planned
                    {
                        return Ok(Outcome::Bool(false));
                    }
                }
                view.fire_revisits(&records, &deliveries)?;
                Outcome::Bool(true)
            }
            Op::DoNotContact { shop, customer, on } => {
                view.set_do_not_contact(&shop, &customer, on)?;
                Outcome::Done
            }
            Op::PutDeliveries { deliveries } => {
                view.put_deliveries(&deliveries)?;
                Outcome::Done
            }
            Op::RemoveDelivery { key } => {
                view.remove_delivery(&key)?;
                Outcome::Done
            }
            Op::PutVersion { shop, step, record } => {
                view.put_version(&shop, step, &record)?;
                Outcome::Done
            }
            Op::RemoveVersions {
                shop,
                step,
                versions,
            } => {
                view.remove_versions(&shop, step, &versions)?;
                Outcome::Done
            }
            Op::SetActive {
                shop,
                step,
                version,
            } => {
                view.set_active(&shop, step, version)?;
                Outcome::Done
            }
            Op::PutShopRecord { record } => {
                view.put_shop_record(&record)?;
                Outcome::Done
            }
            Op::SetCanary { shop, step, record } => {
                view.set_canary(&shop, step, record.as_ref())?;
                Outcome::Done
            }
            Op::Audit { event } => {
                view.append_audit(&event)?;
                Outcome::Done
            }
            Op::AcceptEvent { record } => Outcome::Event(view.accept_event(&record)?.map(Box::new)),
            Op::CommitEvent { commit } => {
                // Committed once: a commit of an event no longer pending
                // (another node's, before this one took over) is dropped.
                match view.event(&commit.event.shop, &commit.event.id)? {
                    Some(e) if e.status == crate::storage::EventStatus::Pending => {
                        view.commit_event(&commit)?;
                        Outcome::Bool(true)
                    }
                    _ => Outcome::Bool(false),
                }
            }
            Op::RetryEvent { shop, id, seq } => {
                Outcome::Event(view.retry_event(&shop, &id, seq)?.map(Box::new))
            }
            Op::FireTimer { timer, event } => {
                // Fired once, as revisits are.
                if !view
                    .timers(&timer.shop, &timer.subject)?
                    .iter()
                    .any(|t| t.id == timer.id)
                {
                    return Ok(Outcome::Bool(false));
                }
                view.fire_timer(&timer, &event)?;
                Outcome::Bool(true)
            }
            Op::SetActionStatus { shop, id, status } => {
                Outcome::Bool(view.set_action_status(&shop, id, status)?)
            }
            Op::PruneEvents { before_ms } => Outcome::Count(view.prune_events(before_ms)?),
            Op::Import { tree, key, value } => {
                let hex = |s: &str| {
                    hex::decode(s)
                        .map_err(|e| StorageError::Corrupt(format!("an imported record: {e}")))
                };
                view.import(&tree, &hex(&key)?, &hex(&value)?)?;
                Outcome::Done
            }
            Op::Batch { ops } => {
                let mut outcomes = Vec::with_capacity(ops.len());
                for op in ops {
                    match op.apply(view, again) {
                        // The view failed: nothing after it is applied.
                        Err(e @ StorageError::Backend(_)) => return Err(e),
                        outcome => outcomes.push(outcome),
                    }
                }
                Outcome::Many(outcomes)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_encoded_from_borrowed_records_reads_as_its_op() {
        let decision: Decision = serde_json::from_value(serde_json::json!({
            "id": 7, "shop": "s", "step": "greeting", "digest": "d", "version": 1,
            "at_ms": 1000, "now": 1, "input": {"customer": {"id": "c"}},
            "output": {"reply": "hi"}, "error": null, "duration_us": 3,
        }))
        .unwrap();
        let bytes = serde_json::to_vec(&DecisionRef::Decision {
            decision: &decision,
            effects: &Effects::None,
        })
        .unwrap();
        match serde_json::from_slice::<Op>(&bytes).unwrap() {
            Op::Decision {
                decision: read,
                effects: Effects::None,
            } => {
                assert_eq!(read.id, 7);
                assert_eq!(read.input.get(), decision.input.get());
                assert_eq!(read.output.unwrap().get(), r#"{"reply":"hi"}"#);
            }
            other => panic!("read as {other:?}"),
        }
    }
}
