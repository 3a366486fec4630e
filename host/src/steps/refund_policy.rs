//! Refund policy (退换货 / 退款): approve, reject, escalate, ask for
//! evidence or explain; a decision is kept as the shop's refund record.

use super::{InputError, Recording, StepKind, StepOutput, times};
use crate::bindings::types::{RefundDecision, RefundOutcome, RefundRequest};
use crate::error::CallError;
use crate::storage::{Effects, RefundRecord, StorageError};
use wasmtime::component::InstancePre;

/// The `refund-policy` world's generated bindings.
mod bindings {
    super::super::world!("refund-policy");
}

pub struct RefundPolicy;

impl StepKind for RefundPolicy {
    const WORLD: &'static str = "refund-policy";
    const EXPORT: &'static str = "decide";
    const ENDPOINT: &'static str = "refund-decision";
    const SUMMARY: &'static str = "Decide a refund, return or exchange";
    const SAMPLE: &'static str =
        include_str!("../../../examples/requests/refund-policy/unshipped.json");
    const DEFAULT_PLUGIN: &'static [u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kefu_refund_policy.wasm"));
    type Request = RefundRequest;
    type Answer = RefundDecision;

    const SHARE: &'static str = "approved";

    fn customer(req: &RefundRequest) -> &str {
        &req.customer.id
    }

    fn order(req: &RefundRequest) -> Option<&str> {
        Some(&req.order.id)
    }

    /// Refunds approved.
    fn share(answer: &RefundDecision) -> bool {
        matches!(answer.outcome, RefundOutcome::Approve)
    }

    fn output(answer: RefundDecision) -> StepOutput {
        StepOutput::RefundPolicy(answer)
    }

    fn check_export<T: 'static>(pre: &InstancePre<T>) -> wasmtime::Result<()> {
        bindings::RefundPolicyIndices::new(pre).map(|_| ())
    }

    /// An approved refund never exceeds what is refundable; any other
    /// outcome refunds nothing.
    fn check_input(req: &RefundRequest) -> Result<(), InputError> {
        times::check_order("order", &req.order)
    }

    fn check(req: &RefundRequest, dec: &RefundDecision, _now: i64) -> Result<(), CallError> {
        let refundable = req.order.total_paid.saturating_sub(req.order.refunded);
        match dec.outcome {
            RefundOutcome::Approve if dec.amount > refundable => {
                Err(CallError::InvalidOutput(format!(
                    "approved refund of {} fen exceeds the refundable {} fen (paid {} - refunded {})",
                    dec.amount, refundable, req.order.total_paid, req.order.refunded
                )))
            }
            RefundOutcome::Approve => Ok(()),
            _ if dec.amount != 0 => Err(CallError::InvalidOutput(format!(
                "amount is {} fen but the outcome is not approve (must be 0)",
                dec.amount
            ))),
            _ => Ok(()),
        }
    }

    /// The decision is kept as the shop's refund record.
    fn effects(
        at: &Recording<'_>,
        req: &RefundRequest,
        dec: &RefundDecision,
    ) -> Result<Effects, StorageError> {
        Ok(Effects::Refund(RefundRecord {
            id: at.decision_id,
            shop: at.shop.to_string(),
            order_id: req.order.id.clone(),
            buyer_id: req.order.buyer_id.clone(),
            at_ms: at.at_ms,
            reason: req.reason,
            kind: req.kind,
            requested: req.amount,
            decision: dec.clone(),
            decision_id: at.decision_id,
        }))
    }
}
