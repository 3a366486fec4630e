//! The host's own checks of a plugin's output against its input. A plugin
//! can decide anything its shop wants, but never something impossible or
//! harmful: refunding more than is refundable, planning a revisit in the
//! past, merging with an order that is not the buyer's.

use crate::bindings::types::{ConfirmationVerdict, RefundOutcome};
use crate::error::CallError;
use crate::step::{StepInput, StepOutput};

/// Most revisits one plan may contain.
pub const MAX_REVISITS: usize = 50;
/// Most attempts one revisit may ask for.
pub const MAX_ATTEMPTS: u32 = 10;

fn invalid(msg: impl Into<String>) -> CallError {
    CallError::InvalidOutput(msg.into())
}

/// Reject an output whose JSON form is larger than `limit` bytes.
pub fn output_size(output: &StepOutput, limit: usize) -> Result<(), CallError> {
    let size = serde_json::to_vec(output)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > limit {
        return Err(CallError::OutputTooLarge { size, limit });
    }
    Ok(())
}

/// Check `output` against the `input` it answers, at time `now`.
pub fn check(input: &StepInput, output: &StepOutput, now: i64) -> Result<(), CallError> {
    match (input, output) {
        (StepInput::Greeting(_), StepOutput::Greeting(reply)) => {
            if reply.reply.trim().is_empty() && !reply.hand_off {
                return Err(invalid(
                    "greeting reply is empty and hand-off is false: the buyer would get no answer",
                ));
            }
            Ok(())
        }
        (StepInput::OrderConfirmation(req), StepOutput::OrderConfirmation(conf)) => {
            match &conf.verdict {
                ConfirmationVerdict::NeedsFix(issues) if issues.is_empty() => {
                    return Err(invalid("verdict needs-fix lists no issue"));
                }
                ConfirmationVerdict::Hold(reason) if reason.trim().is_empty() => {
                    return Err(invalid("verdict hold gives no reason"));
                }
                _ => {}
            }
            for id in &conf.merge_with {
                if id == &req.order.id {
                    return Err(invalid(format!("merge-with names the order itself ({id})")));
                }
                if !req.open_orders.iter().any(|o| &o.id == id) {
                    return Err(invalid(format!(
                        "merge-with names order {id}, which is not among the buyer's open orders"
                    )));
                }
            }
            Ok(())
        }
        (StepInput::RefundPolicy(req), StepOutput::RefundPolicy(dec)) => {
            let refundable = req.order.total_paid.saturating_sub(req.order.refunded);
            match dec.outcome {
                RefundOutcome::Approve => {
                    if dec.amount > refundable {
                        return Err(invalid(format!(
                            "approved refund of {} fen exceeds the refundable {} fen (paid {} - refunded {})",
                            dec.amount, refundable, req.order.total_paid, req.order.refunded
                        )));
                    }
                }
                _ if dec.amount != 0 => {
                    return Err(invalid(format!(
                        "amount is {} fen but the outcome is not approve (must be 0)",
                        dec.amount
                    )));
                }
                _ => {}
            }
            Ok(())
        }
        (StepInput::RevisitPlanner(_), StepOutput::RevisitPlanner(plan)) => {
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
        (input, output) => Err(invalid(format!(
            "output is for step {} but the input is for {}",
            output.step(),
            input.step()
        ))),
    }
}
