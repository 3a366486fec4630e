"""Refund policy of 衣见倾心女装 (the apparel example shop), in Python.

Clothes are bought to be tried on: unworn clothes with their tags may be
returned within `no_reason_return_days` of delivery, but sale items (final sale) are
final. Quality problems need a photo first; big amounts go to a supervisor.

Build: componentize-py -d ../../../wit -w refund-policy componentize app -o refund.wasm
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import clock, config, log
from wit_world.imports.types import (
    LogisticsState,
    OrderStatus,
    RefundDecision,
    RefundKind,
    RefundOutcome_Approve,
    RefundOutcome_Escalate,
    RefundOutcome_Reject,
    RefundOutcome_RequestEvidence,
    RefundReason,
    RefundRequest,
    ReturnShipping,
)

DAY = 86_400
DEFAULTS = {
    "no_reason_return_days": 7,
    "supervisor_threshold_fen": 100_000,
    "min_evidence": 1,
    # 1: sale items (final sale) are never returned without a reason;
    # 0: they are, like any other item. The default Rust plugin has no
    # such key (and refuses it): deploy this plugin with its config.
    "sale_items_final": 1,
}


def load_config() -> dict:
    try:
        cfg = json.loads(config.get() or "{}")
    except ValueError as e:
        raise Err(f"invalid plugin config: {e}")
    unknown = set(cfg) - set(DEFAULTS)
    if unknown:
        raise Err(f"invalid plugin config: unknown key(s) {sorted(unknown)}")
    merged = dict(DEFAULTS, **cfg)
    for key, value in merged.items():
        if not isinstance(value, int) or value < 0:
            raise Err(f"invalid plugin config: {key} must be a non-negative integer")
    return merged


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def decision(outcome, message, amount=0, back=False, shipping=ReturnShipping.NONE):
    return RefundDecision(
        outcome=outcome,
        amount=amount,
        return_required=back,
        return_shipping=shipping,
        message=message,
    )


class WitWorld(wit_world.WitWorld):
    def decide(self, request: RefundRequest) -> RefundDecision:
        cfg = load_config()
        now = clock.now()
        order = request.order
        refundable = max(order.total_paid - order.refunded, 0)
        if request.amount > refundable:
            return decision(
                RefundOutcome_Reject(f"asks for {request.amount} fen, refundable is {refundable} fen"),
                f"亲，这笔订单最多可退¥{yuan(refundable)}，麻烦您修改一下金额哦～",
            )
        amount = request.amount

        if order.status == OrderStatus.PAID and request.logistics == LogisticsState.NOT_SHIPPED:
            return decision(
                RefundOutcome_Approve(),
                f"亲，订单还没发货，已为您全额退款¥{yuan(amount)}～",
                amount=amount,
            )
        if amount > cfg["supervisor_threshold_fen"]:
            return decision(
                RefundOutcome_Escalate(f"amount {amount} fen is over {cfg['supervisor_threshold_fen']} fen"),
                "亲，您的申请已交给主管优先处理，请稍等哦～",
            )

        if request.reason == RefundReason.NO_REASON:
            return self.try_on_return(cfg, request, now, amount)
        if request.reason in (RefundReason.QUALITY, RefundReason.DAMAGED, RefundReason.WRONG_ITEM):
            if request.evidence_count < cfg["min_evidence"]:
                return decision(
                    RefundOutcome_RequestEvidence("a photo of the problem is needed"),
                    "亲，麻烦拍一下衣服有问题的地方发给我们，核实后马上为您处理～",
                )
            back = request.kind != RefundKind.REFUND_ONLY
            paid = 0 if request.kind == RefundKind.EXCHANGE else amount
            return decision(
                RefundOutcome_Approve(),
                "亲，给您添麻烦了，来回运费由我们承担～",
                amount=paid,
                back=back,
                shipping=ReturnShipping.SHOP if back else ReturnShipping.NONE,
            )
        return decision(
            RefundOutcome_Escalate(f"reason {request.reason.name.lower()} needs a person"),
            "亲，您的申请已交给主管处理，请稍等哦～",
        )

    def try_on_return(self, cfg, request: RefundRequest, now: int, amount: int) -> RefundDecision:
        order = request.order
        days = cfg["no_reason_return_days"]
        if order.delivered_at is None or now - order.delivered_at > days * DAY:
            return decision(
                RefundOutcome_Reject(f"try-on returns are accepted within {days} days of delivery"),
                f"亲，试穿退货需要在签收后{days}天内申请哦，已经超过时间啦～",
            )
        concerned = [i for i in order.items if not request.skus or i.sku in request.skus]
        sale = [i.sku for i in concerned if i.final_sale and cfg["sale_items_final"]]
        if sale:
            return decision(
                RefundOutcome_Reject(f"sale item(s) {', '.join(sale)} are final"),
                "亲，特价清仓款一经售出不退不换，下单页有说明哦～",
            )
        if not request.goods_unused:
            return decision(
                RefundOutcome_Reject("worn clothes or missing tags cannot be returned"),
                "亲，衣服需要未穿着、吊牌完好才能退哦～",
            )
        log.write(log.Level.INFO, f"try-on return approved for order {order.id}")
        shipping = ReturnShipping.INSURANCE if request.shipping_insurance else ReturnShipping.BUYER
        return decision(
            RefundOutcome_Approve(),
            f"亲，已同意退货，请保持吊牌完好寄回，收到后退款¥{yuan(amount)}～",
            amount=amount,
            back=True,
            shipping=shipping,
        )
