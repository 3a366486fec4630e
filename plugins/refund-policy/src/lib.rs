//! Default refund policy (退换货 / 退款): unshipped orders refunded in full,
//! seven-day no-reason returns, quality claims with evidence, shop-fault
//! cases, lost parcels, explanations for misunderstandings, and supervisor
//! escalation for big amounts, repeat refunders and disputes.

wit_bindgen::generate!({
    world: "refund-policy",
    path: "../../wit",
    // Serde on the generated types lets a native build read the same JSON
    // inputs as the host (benchmarks).
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use kefu::workflow::types::{
    LogisticsState, OrderStatus, RefundKind, RefundOutcome, RefundReason, ReturnShipping,
};
use kefu::workflow::{clock, config};
use kefu_plugin_common::{SECS_PER_DAY, load_config, yuan};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Days after delivery a no-reason return is accepted (七天无理由).
    no_reason_return_days: u32,
    /// Amounts above this (fen) go to a supervisor. 0 disables.
    supervisor_threshold_fen: u64,
    /// Buyers with this many refunds in 90 days go to a supervisor. 0 disables.
    repeat_refunder_threshold: u32,
    /// Reasons that need photos or other proof first.
    evidence_required_for: Vec<String>,
    /// Least number of photos or proofs.
    min_evidence: u32,
    /// Buyer-facing texts.
    messages: Messages,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Messages {
    unshipped: String,
    no_reason_ok: String,
    no_reason_late: String,
    no_reason_final_sale: String,
    no_reason_used: String,
    need_evidence: String,
    shop_fault: String,
    lost: String,
    in_transit: String,
    explain: String,
    escalate: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            no_reason_return_days: 7,
            supervisor_threshold_fen: 50_000,
            repeat_refunder_threshold: 3,
            evidence_required_for: vec!["quality".into(), "damaged".into()],
            min_evidence: 1,
            messages: Messages::default(),
        }
    }
}

impl Default for Messages {
    fn default() -> Self {
        Messages {
            unshipped: "亲，您的订单还没有发货，已为您全额退款¥{amount}，款项会原路退回，请注意查收 :)".into(),
            no_reason_ok: "亲，已同意您的七天无理由退货申请，请保持商品完好、吊牌和包装齐全寄回，{shipping}，我们收到后会尽快为您退款¥{amount} :)".into(),
            no_reason_late: "亲，非常抱歉，您的订单签收已超过{days}天，已过七天无理由退货期限。如果商品有质量问题，请拍照发给我们，我们一定帮您处理 :)".into(),
            no_reason_final_sale: "亲，非常抱歉，特价/定制类商品不支持七天无理由退货，下单页面有说明哦。如果商品有质量问题，请拍照发给我们，我们一定帮您处理 :)".into(),
            no_reason_used: "亲，非常抱歉，七天无理由退货需要商品未使用、不影响二次销售哦。如果是商品有问题，请拍照发给我们，我们一定帮您处理 :)".into(),
            need_evidence: "亲，给您带来不便非常抱歉！麻烦您拍一下商品问题部位的照片或视频发给我们，我们核实后马上为您处理 :)".into(),
            shop_fault: "亲，非常抱歉给您带来不便！这是我们的责任，{action}，来回运费由我们承担 :)".into(),
            lost: "亲，非常抱歉，物流显示您的包裹已丢失，已为您全额退款¥{amount}，给您添麻烦了 :)".into(),
            in_transit: "亲，物流显示您的包裹还在运输途中，请再耐心等待一下，我们也会帮您催促快递，如有异常第一时间联系您 :)".into(),
            explain: "亲，先别着急，可能是使用方法的问题，我们的客服马上为您详细说明商品的特性和正确使用方法，如果还是不满意我们再为您处理 :)".into(),
            escalate: "亲，您的申请已收到，已交由主管为您优先处理，请您稍等，我们会尽快给您答复 :)".into(),
        }
    }
}

struct Plugin;

impl Guest for Plugin {
    fn decide(req: RefundRequest) -> Result<RefundDecision, String> {
        run(&config::get(), &req, clock::now())
    }
}

/// The plugin's rule as a plain function: the shop's config (JSON), the
/// request and the call's time in, the decision out. The export above is
/// this with the host's config and clock.
pub fn run(config_json: &str, req: &RefundRequest, now: i64) -> Result<RefundDecision, String> {
    let cfg: Config = load_config(config_json)?;
    Ok(decide(&cfg, req, now))
}

export!(Plugin);

fn reason_name(r: RefundReason) -> &'static str {
    match r {
        RefundReason::NoReason => "no-reason",
        RefundReason::Quality => "quality",
        RefundReason::WrongItem => "wrong-item",
        RefundReason::Damaged => "damaged",
        RefundReason::NotReceived => "not-received",
        RefundReason::Misunderstanding => "misunderstanding",
        RefundReason::Other => "other",
    }
}

fn decision(outcome: RefundOutcome, message: String) -> RefundDecision {
    RefundDecision {
        outcome,
        amount: 0,
        return_required: false,
        return_shipping: ReturnShipping::None,
        message,
    }
}

fn approve(
    amount: u64,
    return_required: bool,
    shipping: ReturnShipping,
    message: String,
) -> RefundDecision {
    RefundDecision {
        outcome: RefundOutcome::Approve,
        amount,
        return_required,
        return_shipping: shipping,
        message,
    }
}

fn decide(cfg: &Config, req: &RefundRequest, now: i64) -> RefundDecision {
    let order = &req.order;
    let m = &cfg.messages;
    let refundable = order.total_paid.saturating_sub(order.refunded);
    let amount = req.amount.min(refundable);
    let with_amount = |t: &str| t.replace("{amount}", &yuan(amount));

    match order.status {
        OrderStatus::Unpaid | OrderStatus::Cancelled => {
            return decision(
                RefundOutcome::Reject(format!(
                    "order {} is {:?}: nothing was paid",
                    order.id, order.status
                )),
                String::new(),
            );
        }
        _ if refundable == 0 => {
            return decision(
                RefundOutcome::Reject(format!("order {} is already fully refunded", order.id)),
                String::new(),
            );
        }
        _ if req.amount > refundable => {
            return decision(
                RefundOutcome::Reject(format!(
                    "asks for {} fen but only {} fen is refundable",
                    req.amount, refundable
                )),
                format!(
                    "亲，这笔订单最多可退¥{}，麻烦您修改一下退款金额哦 :)",
                    yuan(refundable)
                ),
            );
        }
        // Not shipped yet: refund at once, in full.
        OrderStatus::Paid if matches!(req.logistics, LogisticsState::NotShipped) => {
            return approve(
                amount,
                false,
                ReturnShipping::None,
                with_amount(&m.unshipped),
            );
        }
        _ => {}
    }

    if cfg.supervisor_threshold_fen > 0 && amount > cfg.supervisor_threshold_fen {
        return decision(
            RefundOutcome::Escalate(format!(
                "amount {} fen is over the supervisor threshold of {} fen",
                amount, cfg.supervisor_threshold_fen
            )),
            m.escalate.clone(),
        );
    }
    if cfg.repeat_refunder_threshold > 0
        && req.history.refunds_last_90_days >= cfg.repeat_refunder_threshold
    {
        return decision(
            RefundOutcome::Escalate(format!(
                "buyer had {} refunds in 90 days (threshold {})",
                req.history.refunds_last_90_days, cfg.repeat_refunder_threshold
            )),
            m.escalate.clone(),
        );
    }

    let needs_evidence = cfg
        .evidence_required_for
        .iter()
        .any(|r| r == reason_name(req.reason));
    if needs_evidence && req.evidence_count < cfg.min_evidence {
        return decision(
            RefundOutcome::RequestEvidence(format!(
                "{} claim needs at least {} photo(s) or proof",
                reason_name(req.reason),
                cfg.min_evidence
            )),
            m.need_evidence.clone(),
        );
    }
    let goods_back = !matches!(req.kind, RefundKind::RefundOnly);
    let amount_if_refund = if matches!(req.kind, RefundKind::Exchange) {
        0
    } else {
        amount
    };

    match req.reason {
        RefundReason::NoReason => no_reason(cfg, req, now, amount_if_refund),
        RefundReason::Quality | RefundReason::WrongItem | RefundReason::Damaged => {
            let action = match req.kind {
                RefundKind::Exchange => "马上为您换新".to_string(),
                RefundKind::ReturnAndRefund => {
                    format!("请您把商品寄回，收到后为您退款¥{}", yuan(amount))
                }
                RefundKind::RefundOnly => format!("已为您退款¥{}", yuan(amount)),
            };
            let message = m.shop_fault.replace("{action}", &action);
            approve(
                amount_if_refund,
                goods_back,
                if goods_back {
                    ReturnShipping::Shop
                } else {
                    ReturnShipping::None
                },
                message,
            )
        }
        RefundReason::NotReceived => match req.logistics {
            LogisticsState::Lost => {
                approve(amount, false, ReturnShipping::None, with_amount(&m.lost))
            }
            LogisticsState::InTransit => decision(
                RefundOutcome::Reject("parcel is in transit according to logistics".into()),
                m.in_transit.clone(),
            ),
            LogisticsState::Delivered => decision(
                RefundOutcome::Escalate(
                    "logistics says delivered but the buyer did not receive it: dispute".into(),
                ),
                m.escalate.clone(),
            ),
            LogisticsState::NotShipped | LogisticsState::Unknown => decision(
                RefundOutcome::Escalate(
                    "no tracking information to check the parcel against".into(),
                ),
                m.escalate.clone(),
            ),
        },
        RefundReason::Misunderstanding => decision(
            RefundOutcome::Explain(
                "explain the product and its correct use before any refund".into(),
            ),
            m.explain.clone(),
        ),
        RefundReason::Other => decision(
            RefundOutcome::Escalate("reason `other` needs a person to judge".into()),
            m.escalate.clone(),
        ),
    }
}

/// Seven-day no-reason return, counted from delivery.
fn no_reason(cfg: &Config, req: &RefundRequest, now: i64, amount: u64) -> RefundDecision {
    let m = &cfg.messages;
    let days = cfg.no_reason_return_days;
    let Some(delivered) = req.order.delivered_at else {
        return decision(
            RefundOutcome::Reject(
                "no-reason return counts from delivery, and the order has no delivery time".into(),
            ),
            m.in_transit.clone(),
        );
    };
    if now.saturating_sub(delivered) > i64::from(days) * SECS_PER_DAY {
        return decision(
            RefundOutcome::Reject(format!(
                "delivered {} day(s) ago, past the {days}-day no-reason window",
                now.saturating_sub(delivered) / SECS_PER_DAY
            )),
            m.no_reason_late.replace("{days}", &days.to_string()),
        );
    }
    let final_sale = req
        .order
        .items
        .iter()
        .filter(|i| req.skus.is_empty() || req.skus.contains(&i.sku))
        .find(|i| i.final_sale);
    if let Some(item) = final_sale {
        return decision(
            RefundOutcome::Reject(format!("item {} is final sale", item.sku)),
            m.no_reason_final_sale.clone(),
        );
    }
    if !req.goods_unused {
        return decision(
            RefundOutcome::Reject("goods were used: no-reason returns need unused goods".into()),
            m.no_reason_used.clone(),
        );
    }
    let (shipping, who) = if req.shipping_insurance {
        (ReturnShipping::Insurance, "退货运费由运费险承担")
    } else {
        (ReturnShipping::Buyer, "退货运费需要您承担")
    };
    let message = m
        .no_reason_ok
        .replace("{shipping}", who)
        .replace("{amount}", &yuan(amount));
    approve(amount, true, shipping, message)
}
