//! A kefu refund-policy plugin. Build: cargo build --release --target wasm32-wasip2
wit_bindgen::generate!({ world: "refund-policy", path: "wit" });

use kefu::workflow::types::{LogisticsState, RefundOutcome, ReturnShipping};

struct Plugin;

impl Guest for Plugin {
    fn decide(request: RefundRequest) -> Result<RefundDecision, String> {
        let refundable = request.order.total_paid.saturating_sub(request.order.refunded);
        if matches!(request.logistics, LogisticsState::NotShipped) {
            return Ok(RefundDecision {
                outcome: RefundOutcome::Approve,
                amount: request.amount.min(refundable),
                return_required: false,
                return_shipping: ReturnShipping::None,
                message: "亲，订单未发货，已为您退款 :)".into(),
            });
        }
        Ok(RefundDecision {
            outcome: RefundOutcome::Escalate("shipped orders are decided by a person".into()),
            amount: 0,
            return_required: false,
            return_shipping: ReturnShipping::None,
            message: "亲，已为您转交主管处理 :)".into(),
        })
    }
}

export!(Plugin);
