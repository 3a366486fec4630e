"""A kefu refund-policy plugin. Build: componentize-py -d wit -w refund-policy componentize app -o plugin.wasm"""
import wit_world
from wit_world.imports.types import (
    LogisticsState,
    RefundDecision,
    RefundOutcome_Approve,
    RefundOutcome_Escalate,
    RefundRequest,
    ReturnShipping,
)


class WitWorld(wit_world.WitWorld):
    def decide(self, request: RefundRequest) -> RefundDecision:
        refundable = max(request.order.total_paid - request.order.refunded, 0)
        if request.logistics == LogisticsState.NOT_SHIPPED:
            return RefundDecision(RefundOutcome_Approve(), min(request.amount, refundable), False, ReturnShipping.NONE, "亲，订单未发货，已为您退款 :)")
        return RefundDecision(RefundOutcome_Escalate("shipped orders are decided by a person"), 0, False, ReturnShipping.NONE, "亲，已为您转交主管处理 :)")
