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

/// Reject an output whose JSON form is larger than `limit` bytes. The
/// bytes are counted, not kept.
pub fn output_size(output: &StepOutput, limit: usize) -> Result<(), CallError> {
    let mut counter = ByteCounter(0);
    let size = match serde_json::to_writer(&mut counter, output) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    };
    if size > limit {
        return Err(CallError::OutputTooLarge { size, limit });
    }
    Ok(())
}

/// A writer that only counts what it is given.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
                RefundOutcome::Approve if dec.amount > refundable => {
                    return Err(invalid(format!(
                        "approved refund of {} fen exceeds the refundable {} fen (paid {} - refunded {})",
                        dec.amount, refundable, req.order.total_paid, req.order.refunded
                    )));
                }
                RefundOutcome::Approve => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::types::*;

    fn order(total: u64, refunded: u64) -> Order {
        Order {
            id: "o1".into(),
            buyer_id: "b".into(),
            status: OrderStatus::Delivered,
            items: vec![],
            shipping_fee: 0,
            total_paid: total,
            refunded,
            created_at: 0,
            paid_at: None,
            shipped_at: None,
            delivered_at: None,
            address: Address {
                recipient: String::new(),
                phone: String::new(),
                province: String::new(),
                city: String::new(),
                district: String::new(),
                detail: String::new(),
            },
            buyer_remark: String::new(),
            courier: String::new(),
        }
    }

    fn customer() -> Customer {
        Customer {
            id: "b".into(),
            nickname: "n".into(),
            member_level: None,
            order_count: 0,
            returning: false,
        }
    }

    fn refund(total: u64, refunded: u64) -> StepInput {
        StepInput::RefundPolicy(RefundRequest {
            order: order(total, refunded),
            customer: customer(),
            reason: RefundReason::Quality,
            kind: RefundKind::RefundOnly,
            amount: total,
            skus: vec![],
            evidence_count: 0,
            goods_unused: true,
            logistics: LogisticsState::Delivered,
            shipping_insurance: false,
            history: RefundHistory {
                refunds_last_90_days: 0,
                refunds_total: 0,
            },
            buyer_message: String::new(),
        })
    }

    fn decision(outcome: RefundOutcome, amount: u64) -> StepOutput {
        StepOutput::RefundPolicy(RefundDecision {
            outcome,
            amount,
            return_required: false,
            return_shipping: ReturnShipping::None,
            message: String::new(),
        })
    }

    #[test]
    fn approved_refund_never_exceeds_what_is_refundable() {
        let input = refund(1000, 300);
        assert!(check(&input, &decision(RefundOutcome::Approve, 700), 0).is_ok());
        let err = check(&input, &decision(RefundOutcome::Approve, 701), 0).unwrap_err();
        assert!(
            err.to_string().contains("exceeds the refundable 700 fen"),
            "{err}"
        );
        let err = check(&input, &decision(RefundOutcome::Reject("no".into()), 5), 0).unwrap_err();
        assert!(err.to_string().contains("must be 0"), "{err}");
    }

    fn plan(due_at: i64, max_attempts: u32, retry_after_hours: u32) -> StepOutput {
        StepOutput::RevisitPlanner(RevisitPlan {
            revisits: vec![PlannedRevisit {
                due_at,
                channel: Channel::Chat,
                purpose: "satisfaction".into(),
                message: "hi".into(),
                attempts: AttemptPolicy {
                    max_attempts,
                    retry_after_hours,
                },
            }],
        })
    }

    #[test]
    fn revisit_is_never_scheduled_in_the_past() {
        let input = StepInput::RevisitPlanner(RevisitRequest {
            customer: customer(),
            trigger: RevisitTrigger::Delivered(order(1, 0)),
            preferred_channel: None,
        });
        assert!(check(&input, &plan(1_000, 3, 24), 1_000).is_ok());
        let err = check(&input, &plan(999, 3, 24), 1_000).unwrap_err();
        assert!(err.to_string().contains("before now"), "{err}");
        assert!(
            check(&input, &plan(2_000, 0, 24), 1_000).is_err(),
            "zero attempts"
        );
        assert!(
            check(&input, &plan(2_000, 3, 0), 1_000).is_err(),
            "retries with no gap"
        );
    }

    #[test]
    fn merge_only_with_the_buyers_open_orders() {
        let mut other = order(1, 0);
        other.id = "o2".into();
        let input = StepInput::OrderConfirmation(ConfirmationRequest {
            order: order(1, 0),
            customer: customer(),
            open_orders: vec![other],
            similar_buyer_ids: vec![],
            agent_name: None,
        });
        let out = |ids: &[&str], verdict| {
            StepOutput::OrderConfirmation(Confirmation {
                verdict,
                message: String::new(),
                remark: None,
                merge_with: ids.iter().map(|s| s.to_string()).collect(),
            })
        };
        assert!(check(&input, &out(&["o2"], ConfirmationVerdict::Ok), 0).is_ok());
        assert!(check(&input, &out(&["o9"], ConfirmationVerdict::Ok), 0).is_err());
        assert!(check(&input, &out(&["o1"], ConfirmationVerdict::Ok), 0).is_err());
        assert!(check(&input, &out(&[], ConfirmationVerdict::NeedsFix(vec![])), 0).is_err());
    }

    #[test]
    fn empty_greeting_without_hand_off_is_refused() {
        let input = StepInput::Greeting(GreetingRequest {
            customer: customer(),
            message: String::new(),
            agent_name: None,
        });
        let reply = |text: &str, hand_off| {
            StepOutput::Greeting(GreetingReply {
                reply: text.into(),
                quick_replies: vec![],
                hand_off,
                matched_keywords: vec![],
                off_hours: false,
            })
        };
        assert!(check(&input, &reply(" ", false), 0).is_err());
        assert!(check(&input, &reply("", true), 0).is_ok());
        assert!(check(&input, &reply("您好", false), 0).is_ok());
    }
}
