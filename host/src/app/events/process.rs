//! Processing one event: the shop's flow is called with it and the state
//! it kept for the subject; the steps it asks for run (each a decision,
//! as over HTTP) and their answers come back to it as `step.completed`
//! events, within a budget; timers and actions are gathered. Nothing is
//! written here: the result is one [`EventCommit`], kept at once.

use super::input::subject_name;
use crate::app::App;
use crate::app::registry::{Shop, now_ms};
use crate::app::run::StepError;
use crate::bindings::flow::{
    Action, Event, EventData, FlowInput, FlowOutput, StepCall, StepOutput as FlowStepOutput,
    StepResult,
};
use crate::steps::workflow::step_of;
use crate::steps::{Step, StepInput};
use crate::storage::{
    ActionRecord, ActionStatus, DecisionError as CallError, DecisionRef, Delivery, Effects,
    EventCommit, EventRecord, EventStatus, StorageError, TimerRecord,
};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// Most calls of the flow for one event (the event and the answers of
/// the steps it runs).
pub const MAX_FLOW_CALLS: usize = 16;
/// Most steps one event may run.
pub const MAX_STEP_RUNS: usize = 8;
/// Most timers in a row with no event from outside between them: a flow
/// that keeps rescheduling itself stops there.
pub const MAX_TIMER_CHAIN: u32 = 1000;

/// What processing came to.
pub enum Outcome {
    /// Keep this.
    Commit(Box<EventCommit>),
    /// Nothing can be decided now (storage failing, over quota): the
    /// event stays in the inbox and is tried again later.
    Later(String),
}

/// Why an event failed, as kept on it.
fn failure(code: &str, message: impl Into<String>) -> CallError {
    CallError {
        code: code.into(),
        message: message.into(),
    }
}

/// The flow's output of a step's answer (the step's output JSON).
fn step_output(step: Step, json: &str) -> Result<FlowStepOutput, serde_json::Error> {
    Ok(match step {
        Step::Greeting => FlowStepOutput::Greeting(serde_json::from_str(json)?),
        Step::OrderConfirmation => FlowStepOutput::OrderConfirmation(serde_json::from_str(json)?),
        Step::RefundPolicy => FlowStepOutput::RefundPolicy(serde_json::from_str(json)?),
        Step::RevisitPlanner => FlowStepOutput::RevisitPlanner(serde_json::from_str(json)?),
        Step::Workflow => unreachable!("a flow runs the other steps, not itself"),
    })
}

fn step_input(call: StepCall) -> StepInput {
    match call {
        StepCall::Greeting(r) => StepInput::Greeting(r),
        StepCall::OrderConfirmation(r) => StepInput::OrderConfirmation(r),
        StepCall::RefundPolicy(r) => StepInput::RefundPolicy(r),
        StepCall::RevisitPlanner(r) => StepInput::RevisitPlanner(r),
    }
}

/// The action's kind and data, for the shop's integration; none for the
/// ones the host carries out itself.
fn outward(action: &Action) -> Option<(&'static str, serde_json::Value)> {
    let value = |v: Result<serde_json::Value, _>| v.unwrap_or(serde_json::Value::Null);
    Some(match action {
        Action::SendMessage(m) => ("send-message", value(serde_json::to_value(m))),
        Action::SetRemark(r) => ("set-remark", value(serde_json::to_value(r))),
        Action::MergeOrders(m) => ("merge-orders", value(serde_json::to_value(m))),
        Action::HandOff(reason) => ("hand-off", serde_json::json!({ "reason": reason })),
        Action::Emit(e) => (
            "emit",
            serde_json::json!({
                "kind": e.kind,
                // A JSON payload is passed on as JSON, anything else as text.
                "payload": serde_json::from_str::<serde_json::Value>(&e.payload)
                    .unwrap_or_else(|_| serde_json::Value::String(e.payload.clone())),
            }),
        ),
        Action::RunStep(_) | Action::ScheduleTimer(_) | Action::CancelTimer(_) => return None,
    })
}

/// A decision's reference on its event.
fn reference(d: &crate::storage::Decision) -> DecisionRef {
    DecisionRef {
        id: d.id,
        step: d.step.world().into(),
        version: d.version,
        at_ms: d.at_ms,
        ok: d.error.is_none(),
    }
}

/// Process `record` for `shop`, its calls at `clock` (a simulation's) or
/// now.
pub async fn process(
    app: &App,
    shop: Option<Arc<Shop>>,
    mut record: EventRecord,
    clock: Option<i64>,
) -> Result<Outcome, StorageError> {
    let storage = app.storage.clone();
    record.attempts += 1;
    record.processed_ms = Some(clock.map_or_else(now_ms, |c| c * 1000));
    let earlier = std::mem::take(&mut record.decisions);
    record
        .earlier_decisions
        .extend(earlier.iter().map(|d| d.id));
    record.actions.clear();
    record.timers_set.clear();
    record.timers_cancelled.clear();
    record.error = None;
    let mut commit = EventCommit {
        event: record.clone(),
        decisions: Vec::new(),
        state: None,
        timers_set: Vec::new(),
        timers_cancelled: Vec::new(),
        actions: Vec::new(),
        deliveries: Vec::new(),
    };
    // A failure keeps the decisions made (they are the log) and nothing
    // else the event would have done.
    let fail = |mut commit: EventCommit, error: CallError| -> Result<Outcome, StorageError> {
        tracing::warn!(shop = %commit.event.shop, event = %commit.event.id, code = %error.code, error = %error.message, "event failed");
        commit.event.status = EventStatus::Failed;
        commit.event.error = Some(error);
        commit.event.decisions = commit.decisions.iter().map(|(d, _)| reference(d)).collect();
        // The decisions stay as the log; what they would have recorded
        // (refunds, planned revisits) goes with the rest.
        for (_, effects) in &mut commit.decisions {
            *effects = Effects::None;
        }
        commit.state = None;
        commit.timers_set.clear();
        commit.timers_cancelled.clear();
        commit.actions.clear();
        commit.deliveries.clear();
        commit.event.commit = storage.next_id()?;
        Ok(Outcome::Commit(Box::new(commit)))
    };
    let Some(shop) = shop else {
        return fail(
            commit,
            failure(
                "shop_unavailable",
                format!("shop `{}` is not served now", record.shop),
            ),
        );
    };
    if record.chain > MAX_TIMER_CHAIN {
        return fail(
            commit,
            failure(
                "budget_exceeded",
                format!(
                    "{MAX_TIMER_CHAIN} timers fired in a row with no event from outside (a flow that keeps rescheduling itself?)"
                ),
            ),
        );
    }
    let first: Event = match serde_json::from_str(&record.event) {
        Ok(e) => e,
        Err(e) => return fail(commit, failure("corrupt_event", e.to_string())),
    };
    let subject = first.subject.clone();
    let kept = storage.subject_state(&record.shop, &record.subject)?;
    let mut state = kept.clone();
    let mut timers: BTreeMap<String, Option<TimerRecord>> = BTreeMap::new();
    let mut queue = VecDeque::from([first]);
    let (mut flow_calls, mut step_runs) = (0, 0);

    while let Some(event) = queue.pop_front() {
        flow_calls += 1;
        if flow_calls > MAX_FLOW_CALLS {
            return fail(
                commit,
                failure(
                    "budget_exceeded",
                    format!(
                        "the flow was called {MAX_FLOW_CALLS} times for one event and still asks for more (a loop?)"
                    ),
                ),
            );
        }
        let input = FlowInput {
            event,
            state: state.clone(),
        };
        let event_at = input.event.at;
        let raw = serde_json::value::to_raw_value(&input)
            .map_err(|e| StorageError::Corrupt(e.to_string()))?;
        let decided = match decide(
            app,
            &shop,
            Step::Workflow,
            StepInput::Workflow(input),
            raw,
            clock,
        )
        .await
        {
            Ok(d) => d,
            Err(Decide::Later(why)) => return Ok(Outcome::Later(why)),
            Err(Decide::Failed(error)) => return fail(commit, error),
        };
        let error = decided
            .error
            .as_ref()
            .map(|e| failure(e.code(), e.to_string()));
        let output = decided
            .decision
            .output
            .as_ref()
            .map(|o| o.get().to_string());
        let mut decision = decided.decision;
        decision.event = Some(commit.event.id.clone());
        commit.decisions.push((decision, decided.effects));
        if let Some(error) = error {
            return fail(commit, error);
        }
        let output: FlowOutput = match serde_json::from_str(&output.unwrap_or_default()) {
            Ok(o) => o,
            Err(e) => return fail(commit, failure("invalid_output", e.to_string())),
        };
        if output.state.is_some() {
            state = output.state;
        }
        for action in output.actions {
            match action {
                Action::RunStep(run) => {
                    step_runs += 1;
                    if step_runs > MAX_STEP_RUNS {
                        return fail(
                            commit,
                            failure(
                                "budget_exceeded",
                                format!(
                                    "the flow ran more than {MAX_STEP_RUNS} steps for one event"
                                ),
                            ),
                        );
                    }
                    let step = step_of(&run.call);
                    let input = step_input(run.call);
                    let raw = serde_json::value::to_raw_value(&input)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    let decided = match decide(app, &shop, step, input, raw, clock).await {
                        Ok(d) => d,
                        Err(Decide::Later(why)) => return Ok(Outcome::Later(why)),
                        Err(Decide::Failed(error)) => {
                            // The step cannot run: the flow hears why.
                            queue.push_back(completed(
                                &record,
                                &subject,
                                event_at,
                                step_runs,
                                StepResult {
                                    tag: run.tag,
                                    decision_id: 0,
                                    output: None,
                                    error: error.message,
                                },
                            ));
                            continue;
                        }
                    };
                    let result = match (&decided.error, &decided.decision.output) {
                        (None, Some(json)) => match step_output(step, json.get()) {
                            Ok(out) => StepResult {
                                tag: run.tag,
                                decision_id: decided.decision.id,
                                output: Some(out),
                                error: String::new(),
                            },
                            Err(e) => StepResult {
                                tag: run.tag,
                                decision_id: decided.decision.id,
                                output: None,
                                error: e.to_string(),
                            },
                        },
                        (error, _) => StepResult {
                            tag: run.tag,
                            decision_id: decided.decision.id,
                            output: None,
                            error: error.as_ref().map(|e| e.to_string()).unwrap_or_default(),
                        },
                    };
                    let mut decision = decided.decision;
                    decision.event = Some(commit.event.id.clone());
                    commit.decisions.push((decision, decided.effects));
                    queue.push_back(completed(&record, &subject, event_at, step_runs, result));
                }
                Action::ScheduleTimer(t) => {
                    let timer = TimerRecord {
                        id: storage.next_id()?,
                        shop: record.shop.clone(),
                        subject: record.subject.clone(),
                        name: t.name.clone(),
                        at: t.at,
                        payload: t.payload,
                        set_by: record.id.clone(),
                        chain: record.chain + 1,
                    };
                    timers.insert(t.name, Some(timer));
                }
                Action::CancelTimer(name) => {
                    timers.insert(name, None);
                }
                other => {
                    let (kind, data) = outward(&other).expect("the host's own actions are above");
                    let n = commit.actions.len() + 1;
                    let action = ActionRecord {
                        id: storage.next_id()?,
                        shop: record.shop.clone(),
                        idempotency_key: format!("{}/{n}", record.id),
                        event_id: record.id.clone(),
                        subject: record.subject.clone(),
                        kind: kind.into(),
                        data,
                        at_ms: clock.map_or_else(now_ms, |c| c * 1000),
                        status: ActionStatus::Pending,
                    };
                    if let Some(webhook) = &shop.webhook {
                        commit.deliveries.push(Delivery {
                            key: format!("action-{}", action.id),
                            shop: record.shop.clone(),
                            url: webhook.url.clone(),
                            body: serde_json::json!({
                                "event": "workflow.action",
                                "shop": action.shop,
                                "action_id": action.id,
                                "idempotency_key": action.idempotency_key,
                                "event_id": action.event_id,
                                "subject": action.subject,
                                "kind": action.kind,
                                "data": action.data,
                            })
                            .to_string(),
                            tries: 0,
                            next_try_ms: 0,
                            last_error: None,
                            dead: false,
                            idempotency_key: Some(action.idempotency_key.clone()),
                            queued_ms: now_ms(),
                        });
                    }
                    commit.actions.push(action);
                }
            }
        }
    }

    commit.event.status = EventStatus::Processed;
    commit.event.decisions = commit.decisions.iter().map(|(d, _)| reference(d)).collect();
    commit.event.actions = commit.actions.iter().map(|a| a.id).collect();
    for (name, timer) in timers {
        match timer {
            Some(t) => {
                commit.event.timers_set.push((name, t.at));
                commit.timers_set.push(t);
            }
            None => {
                commit.event.timers_cancelled.push(name.clone());
                commit.timers_cancelled.push(name);
            }
        }
    }
    // The subject is this event's alone while it is processed: what was
    // kept is what was read at the start.
    if state != kept {
        commit.state = state;
    }
    commit.event.commit = storage.next_id()?;
    Ok(Outcome::Commit(Box::new(commit)))
}

/// The `step.completed` event of the `n`-th step an event ran.
fn completed(
    record: &EventRecord,
    subject: &crate::bindings::flow::Subject,
    at: i64,
    n: usize,
    result: StepResult,
) -> Event {
    debug_assert_eq!(subject_name(subject), record.subject);
    Event {
        id: format!("{}/step-{n}", record.id),
        at,
        subject: subject.clone(),
        data: EventData::StepCompleted(result),
    }
}

/// Why a call made no decision.
enum Decide {
    Later(String),
    Failed(CallError),
}

/// One call of `shop`'s `step`, decided and not kept.
async fn decide(
    app: &App,
    shop: &Arc<Shop>,
    step: Step,
    input: StepInput,
    raw: Box<serde_json::value::RawValue>,
    clock: Option<i64>,
) -> Result<crate::app::run::Decided, Decide> {
    let call = app
        .step_call(shop.clone(), step)
        .map_err(|e| Decide::Later(e.to_string()))?;
    call.decide(input, raw, clock).await.map_err(|e| match e {
        StepError::Storage { error, .. } => Decide::Later(error.to_string()),
        StepError::Quota(q) => Decide::Later(q.to_string()),
        StepError::Unavailable { reason, .. } => Decide::Failed(failure(
            "step_unavailable",
            format!("step `{step}` is not available: {reason}"),
        )),
        other => Decide::Failed(failure("step_failed", other.to_string())),
    })
}
