//! Revisit planning (回访): when, how and why to contact a customer after
//! delivery, a resolved complaint or on a special date; the plan's
//! revisits are stored and fired by the scheduler.

use super::{InputError, Recording, StepKind, StepOutput, times};
use crate::bindings::types::{RevisitPlan, RevisitRequest, RevisitTrigger};
use crate::error::CallError;
use crate::storage::{Effects, RevisitRecord, RevisitStatus, StorageError};
use wasmtime::component::InstancePre;

/// The `revisit-planner` world's generated bindings.
mod bindings {
    super::super::world!("revisit-planner");
}

pub struct RevisitPlanner;

/// Most revisits one plan may contain.
pub const MAX_REVISITS: usize = 50;
/// Most attempts one revisit may ask for.
pub const MAX_ATTEMPTS: u32 = 10;

fn invalid(msg: String) -> CallError {
    CallError::InvalidOutput(msg)
}

impl StepKind for RevisitPlanner {
    const WORLD: &'static str = "revisit-planner";
    const EXPORT: &'static str = "plan";
    const ENDPOINT: &'static str = "revisit-plan";
    const SUMMARY: &'static str = "Plan revisits";
    const SAMPLE: &'static str =
        include_str!("../../../examples/requests/revisit-planner/delivered.json");
    const DEFAULT_PLUGIN: &'static [u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kefu_revisit_planner.wasm"));
    type Request = RevisitRequest;
    type Answer = RevisitPlan;

    const SHARE: &'static str = "planned";

    fn customer(req: &RevisitRequest) -> &str {
        &req.customer.id
    }

    fn order(req: &RevisitRequest) -> Option<&str> {
        match &req.trigger {
            RevisitTrigger::Delivered(o)
            | RevisitTrigger::RefundCompleted(o)
            | RevisitTrigger::Unpaid(o) => Some(&o.id),
            RevisitTrigger::ComplaintResolved(_) | RevisitTrigger::SpecialDate(_) => None,
        }
    }

    /// Plans with at least one revisit.
    fn share(plan: &RevisitPlan) -> bool {
        !plan.revisits.is_empty()
    }

    fn output(answer: RevisitPlan) -> StepOutput {
        StepOutput::RevisitPlanner(answer)
    }

    fn check_export<T: 'static>(pre: &InstancePre<T>) -> wasmtime::Result<()> {
        bindings::RevisitPlannerIndices::new(pre).map(|_| ())
    }

    fn check_input(req: &RevisitRequest) -> Result<(), InputError> {
        match &req.trigger {
            RevisitTrigger::Delivered(o) => times::check_order("trigger.Delivered", o),
            RevisitTrigger::RefundCompleted(o) => times::check_order("trigger.RefundCompleted", o),
            RevisitTrigger::Unpaid(o) => times::check_order("trigger.Unpaid", o),
            RevisitTrigger::ComplaintResolved(c) => {
                times::check("trigger.ComplaintResolved.resolved_at", c.resolved_at)
            }
            RevisitTrigger::SpecialDate(d) => times::check("trigger.SpecialDate.date", d.date),
        }
    }

    /// Never in the past, a bounded plan, a sane attempt policy.
    fn check(_: &RevisitRequest, plan: &RevisitPlan, now: i64) -> Result<(), CallError> {
        if plan.revisits.len() > MAX_REVISITS {
            return Err(invalid(format!(
                "plan has {} revisits, at most {MAX_REVISITS} are allowed",
                plan.revisits.len()
            )));
        }
        for (i, r) in plan.revisits.iter().enumerate() {
            if r.due_at < now {
                return Err(invalid(format!(
                    "revisit {i} is due at {} which is before now ({now})",
                    r.due_at
                )));
            }
            if r.attempts.max_attempts == 0 || r.attempts.max_attempts > MAX_ATTEMPTS {
                return Err(invalid(format!(
                    "revisit {i} asks for {} attempts, allowed is 1 to {MAX_ATTEMPTS}",
                    r.attempts.max_attempts
                )));
            }
            if r.attempts.max_attempts > 1 && r.attempts.retry_after_hours == 0 {
                return Err(invalid(format!(
                    "revisit {i} retries with no time between attempts"
                )));
            }
        }
        Ok(())
    }

    /// Each planned revisit is stored, indexed by its due time; a customer
    /// who asked not to be contacted has them kept, cancelled.
    fn effects(
        at: &Recording<'_>,
        req: &RevisitRequest,
        plan: &RevisitPlan,
    ) -> Result<Effects, StorageError> {
        let status = if at.revisits.is_do_not_contact(at.shop, &req.customer.id)? {
            RevisitStatus::Cancelled
        } else {
            RevisitStatus::Planned
        };
        let cause = match &req.trigger {
            RevisitTrigger::ComplaintResolved(c) => Some(c.cause.clone()),
            _ => None,
        };
        let records = plan
            .revisits
            .iter()
            .map(|r| {
                Ok(RevisitRecord {
                    id: at.ids.next_id()?,
                    shop: at.shop.to_string(),
                    customer_id: req.customer.id.clone(),
                    due_at: r.due_at,
                    channel: r.channel,
                    purpose: r.purpose.clone(),
                    message: r.message.clone(),
                    max_attempts: r.attempts.max_attempts,
                    retry_after_hours: r.attempts.retry_after_hours,
                    status,
                    decision_id: at.decision_id,
                    attempts_made: 0,
                    planned_at: at.now,
                    cause: cause.clone(),
                    outcomes: Vec::new(),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        Ok(Effects::Revisits(records))
    }
}
