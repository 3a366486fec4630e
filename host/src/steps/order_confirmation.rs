//! Order confirmation (确认订单): goods, address and phone confirmed with
//! the buyer before shipping; remarks, twin accounts, merged orders.

use super::{InputError, StepKind, StepOutput, times};
use crate::bindings::types::{Confirmation, ConfirmationRequest, ConfirmationVerdict};
use crate::error::CallError;
use wasmtime::component::InstancePre;

/// The `order-confirmation` world's generated bindings.
mod bindings {
    super::super::world!("order-confirmation");
}

pub struct OrderConfirmation;

fn invalid(msg: impl Into<String>) -> CallError {
    CallError::InvalidOutput(msg.into())
}

impl StepKind for OrderConfirmation {
    const WORLD: &'static str = "order-confirmation";
    const EXPORT: &'static str = "confirm";
    const ENDPOINT: &'static str = "order-confirmation";
    const SUMMARY: &'static str = "Confirm an order";
    const SAMPLE: &'static str =
        include_str!("../../../examples/requests/order-confirmation/ok-with-remark.json");
    const DEFAULT_PLUGIN: &'static [u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/kefu_order_confirmation.wasm"));
    type Request = ConfirmationRequest;
    type Answer = Confirmation;

    const SHARE: &'static str = "not-ok";

    fn customer(req: &ConfirmationRequest) -> &str {
        &req.customer.id
    }

    fn order(req: &ConfirmationRequest) -> Option<&str> {
        Some(&req.order.id)
    }

    /// Orders not confirmed as they are (to fix or on hold).
    fn share(answer: &Confirmation) -> bool {
        !matches!(answer.verdict, ConfirmationVerdict::Ok)
    }

    fn output(answer: Confirmation) -> StepOutput {
        StepOutput::OrderConfirmation(answer)
    }

    fn check_export<T: 'static>(pre: &InstancePre<T>) -> wasmtime::Result<()> {
        bindings::OrderConfirmationIndices::new(pre).map(|_| ())
    }

    /// A verdict says why; orders merge only with the buyer's own open
    /// orders.
    fn check_input(req: &ConfirmationRequest) -> Result<(), InputError> {
        times::check_order("order", &req.order)?;
        for (i, order) in req.open_orders.iter().enumerate() {
            times::check_order(&format!("open_orders[{i}]"), order)?;
        }
        Ok(())
    }

    fn check(req: &ConfirmationRequest, conf: &Confirmation, _now: i64) -> Result<(), CallError> {
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
}
