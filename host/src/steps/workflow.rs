//! The workflow (工作流): the shop's flow, called with each of its events
//! and the state it kept for the event's subject; it answers with actions
//! (`crate::app::events` carries them out). As a step it has versions,
//! canaries, replays and hot swap like any other.

use super::{InputError, StepKind, StepOutput, times};
use crate::bindings::flow::{
    Action, ComplaintEvent, EventData, FlowInput, FlowOutput, OrderEvent, StepCall, Subject,
};
use crate::error::CallError;
use wasmtime::component::InstancePre;

/// The `workflow` world's generated bindings.
mod bindings {
    super::super::world!("workflow", "kefu:workflow/flow" => crate::bindings::flow);
}

pub struct Workflow;

/// Most actions one call may answer.
pub const MAX_ACTIONS: usize = 64;
/// Largest state a flow may keep for one subject, bytes.
pub const MAX_STATE_BYTES: usize = 64 * 1024;
/// Longest timer name, emit kind or remark, bytes.
pub const MAX_NAME_BYTES: usize = 128;

fn invalid(msg: String) -> CallError {
    CallError::InvalidOutput(msg)
}

/// The buyer an event is about, as far as its data says ("" when it does
/// not: a canary then takes the subject's id).
pub fn customer_of(input: &FlowInput) -> &str {
    let event = &input.event;
    match &event.data {
        EventData::MessageReceived(r) => &r.customer.id,
        EventData::OrderCreated(e)
        | EventData::OrderPaid(e)
        | EventData::OrderShipped(e)
        | EventData::OrderDelivered(e)
        | EventData::OrderCancelled(e)
        | EventData::RefundCompleted(e) => &e.customer.id,
        EventData::RefundRequested(r) => &r.customer.id,
        EventData::ComplaintOpened(c) | EventData::ComplaintResolved(c) => &c.customer.id,
        EventData::RevisitDue(r) => &r.customer_id,
        EventData::TimerFired(_) | EventData::StepCompleted(_) => match &event.subject {
            Subject::Customer(id) | Subject::Order(id) => id,
        },
    }
}

impl StepKind for Workflow {
    const WORLD: &'static str = "workflow";
    const EXPORT: &'static str = "handle";
    const ENDPOINT: &'static str = "workflow";
    const SUMMARY: &'static str =
        "Call the flow with one event (a dry run: its actions are returned, not carried out)";
    const SAMPLE: &'static str =
        include_str!("../../../examples/requests/workflow/order-paid.json");
    const DEFAULT_PLUGIN: &'static [u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kefu_workflow.wasm"));
    type Request = FlowInput;
    type Answer = FlowOutput;

    const SHARE: &'static str = "handed-off";

    fn customer(input: &FlowInput) -> &str {
        customer_of(input)
    }

    fn order(input: &FlowInput) -> Option<&str> {
        match &input.event.subject {
            Subject::Order(id) => Some(id),
            Subject::Customer(_) => None,
        }
    }

    /// Events the flow handed to a person.
    fn share(output: &FlowOutput) -> bool {
        output
            .actions
            .iter()
            .any(|a| matches!(a, Action::HandOff(_)))
    }

    fn output(answer: FlowOutput) -> StepOutput {
        StepOutput::Workflow(answer)
    }

    fn check_export<T: 'static>(pre: &InstancePre<T>) -> wasmtime::Result<()> {
        bindings::WorkflowIndices::new(pre).map(|_| ())
    }

    fn check_input(input: &FlowInput) -> Result<(), InputError> {
        let event = &input.event;
        times::check("event.at", event.at)?;
        fn order(path: &str, o: &crate::bindings::types::Order) -> Result<(), InputError> {
            times::check_order(&format!("event.data.{path}.order"), o)
        }
        let orders = |path: &str, e: &OrderEvent| {
            order(path, &e.order)?;
            for (i, o) in e.open_orders.iter().enumerate() {
                times::check_order(&format!("event.data.{path}.open_orders[{i}]"), o)?;
            }
            Ok(())
        };
        let complaint = |path: &str, c: &ComplaintEvent| {
            times::check(
                &format!("event.data.{path}.complaint.resolved_at"),
                c.complaint.resolved_at,
            )?;
            c.order.as_ref().map_or(Ok(()), |o| order(path, o))
        };
        match &event.data {
            EventData::OrderCreated(e) => orders("OrderCreated", e),
            EventData::OrderPaid(e) => orders("OrderPaid", e),
            EventData::OrderShipped(e) => orders("OrderShipped", e),
            EventData::OrderDelivered(e) => orders("OrderDelivered", e),
            EventData::OrderCancelled(e) => orders("OrderCancelled", e),
            EventData::RefundCompleted(e) => orders("RefundCompleted", e),
            EventData::RefundRequested(r) => order("RefundRequested", &r.order),
            EventData::ComplaintOpened(c) => complaint("ComplaintOpened", c),
            EventData::ComplaintResolved(c) => complaint("ComplaintResolved", c),
            EventData::MessageReceived(_)
            | EventData::TimerFired(_)
            | EventData::RevisitDue(_)
            | EventData::StepCompleted(_) => Ok(()),
        }
    }

    /// A bounded answer: a few actions with sane names and times, a small
    /// state, and steps run with inputs the host accepts.
    fn check(_: &FlowInput, output: &FlowOutput, _now: i64) -> Result<(), CallError> {
        if output.actions.len() > MAX_ACTIONS {
            return Err(invalid(format!(
                "{} actions, at most {MAX_ACTIONS} are allowed",
                output.actions.len()
            )));
        }
        if let Some(state) = &output.state
            && state.len() > MAX_STATE_BYTES
        {
            return Err(invalid(format!(
                "state of {} bytes, at most {MAX_STATE_BYTES} are allowed",
                state.len()
            )));
        }
        let name = |i: usize, what: &str, name: &str| {
            if name.is_empty() || name.len() > MAX_NAME_BYTES {
                Err(invalid(format!(
                    "actions[{i}]: {what} must be 1 to {MAX_NAME_BYTES} bytes, not {}",
                    name.len()
                )))
            } else {
                Ok(())
            }
        };
        for (i, action) in output.actions.iter().enumerate() {
            match action {
                // Any time: one in the past fires at once, one past 2100
                // never (a chain of timers has its own budget).
                Action::ScheduleTimer(t) => name(i, "a timer name", &t.name)?,
                Action::CancelTimer(n) => name(i, "a timer name", n)?,
                Action::Emit(e) => name(i, "an emit kind", &e.kind)?,
                Action::RunStep(run) => {
                    let step = step_of(&run.call);
                    let checked = match &run.call {
                        StepCall::Greeting(r) => <super::Greeting as StepKind>::check_input(r),
                        StepCall::OrderConfirmation(r) => {
                            <super::OrderConfirmation as StepKind>::check_input(r)
                        }
                        StepCall::RefundPolicy(r) => {
                            <super::RefundPolicy as StepKind>::check_input(r)
                        }
                        StepCall::RevisitPlanner(r) => {
                            <super::RevisitPlanner as StepKind>::check_input(r)
                        }
                    };
                    checked.map_err(|e| {
                        invalid(format!(
                            "actions[{i}]: the {step} input at `{}`: {}",
                            e.path, e.message
                        ))
                    })?;
                }
                Action::SendMessage(_)
                | Action::SetRemark(_)
                | Action::MergeOrders(_)
                | Action::HandOff(_) => {}
            }
        }
        Ok(())
    }
}

/// The step a `run-step` action names.
pub fn step_of(call: &StepCall) -> super::Step {
    match call {
        StepCall::Greeting(_) => super::Step::Greeting,
        StepCall::OrderConfirmation(_) => super::Step::OrderConfirmation,
        StepCall::RefundPolicy(_) => super::Step::RefundPolicy,
        StepCall::RevisitPlanner(_) => super::Step::RevisitPlanner,
    }
}
