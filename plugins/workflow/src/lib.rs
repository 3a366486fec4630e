//! Default workflow (工作流): the standard customer-service flow of
//! shared/domain.md. A buyer's message is greeted; an order left unpaid
//! gets one polite reminder (催付); a paid order is confirmed, its remark
//! and merges passed on; a delivered order, a completed refund and a
//! resolved complaint get revisits (闭环); a refund request is decided and
//! an approved refund that does not complete is handed to a person. Every
//! number and text is a config key.

// The generated bindings take many arguments; not ours to shorten.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "workflow",
    path: "../../wit",
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use kefu::workflow::config;
use kefu::workflow::flow::{
    Action, ComplaintEvent, Emit, Event, EventData, Merge, Message, OrderEvent, Remark, RunStep,
    StepCall, StepOutput, StepResult, Subject, Timer,
};
use kefu::workflow::types::{
    Channel, ConfirmationRequest, ConfirmationVerdict, Customer, RefundOutcome, RevisitRequest,
    RevisitTrigger,
};
use kefu_plugin_common::{SECS_PER_HOUR, load_config};
use serde::{Deserialize, Serialize};

/// The shop's flow settings.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    /// Hours after an order is placed to remind an unpaid buyer, once.
    unpaid_reminder_hours: i64,
    /// The reminder ("" sends none).
    reminder_message: String,
    /// Told to the buyer when the order ships ("" sends nothing).
    shipped_message: String,
    /// Told to the buyer at once when a complaint opens.
    complaint_ack_message: String,
    /// Hours an approved refund may take to complete before a person
    /// looks at it.
    refund_check_hours: i64,
    /// Greet buyers' messages (the greeting step).
    greet: bool,
    /// Confirm paid orders (the order-confirmation step).
    confirm_paid_orders: bool,
    /// Hand an order that needs fixing to a person as well as telling the
    /// buyer.
    hand_off_on_needs_fix: bool,
    /// Plan revisits after delivery, refunds and complaints (the
    /// revisit-planner step).
    plan_revisits: bool,
    /// Send a revisit's message when it comes due (off: the revisit
    /// webhook already tells the shop's integration, and agents call).
    revisit_messages: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unpaid_reminder_hours: 2,
            reminder_message:
                "{nickname}您好，您拍下的宝贝还没有付款哦，库存有限，需要帮忙可以随时找我 :)".into(),
            shipped_message: "{nickname}您好，您的宝贝已经由{courier}发出啦，请留意查收 :)".into(),
            complaint_ack_message:
                "{nickname}您好，您反馈的问题我们已经收到，会尽快为您处理，请您放心。".into(),
            refund_check_hours: 48,
            greet: true,
            confirm_paid_orders: true,
            hand_off_on_needs_fix: false,
            plan_revisits: true,
            revisit_messages: false,
        }
    }
}

/// What the flow keeps for a subject between its events.
#[derive(Default, Serialize, Deserialize)]
#[serde(default)]
struct Kept {
    /// The furthest the order got: created, paid, shipped, delivered,
    /// cancelled (events may arrive out of order; this never goes back).
    status: String,
    /// The buyer, for messages answering a step.
    customer: Option<String>,
    /// The payment reminder went out.
    reminded: bool,
    /// A refund was approved and has not completed yet.
    refund_pending: bool,
}

/// How far an order status is along; "" is nowhere.
fn rank(status: &str) -> u8 {
    match status {
        "created" => 1,
        "paid" => 2,
        "shipped" => 3,
        "delivered" => 4,
        "cancelled" => 5,
        _ => 0,
    }
}

impl Kept {
    /// Move the order on to `status`, never back; whether it moved.
    fn advance(&mut self, status: &str) -> bool {
        if rank(status) > rank(&self.status) {
            self.status = status.to_string();
            true
        } else {
            false
        }
    }
}

const PAYMENT_REMINDER: &str = "payment-reminder";
const REFUND_CHECK: &str = "refund-check";

struct Plugin;

impl Guest for Plugin {
    fn handle(input: FlowInput) -> Result<FlowOutput, String> {
        run(&config::get(), input)
    }
}

export!(Plugin);

/// The flow as a plain function: the shop's config (JSON) and the input
/// in, the actions out.
pub fn run(config_json: &str, input: FlowInput) -> Result<FlowOutput, String> {
    let cfg: Config = load_config(config_json)?;
    // A state this flow did not write (another flow's, after a swap) is
    // read as far as it fits; what does not fit starts afresh.
    let kept: Kept = input
        .state
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    let mut kept = kept;
    let actions = handle(&cfg, &mut kept, &input.event)?;
    let state = serde_json::to_string(&kept).map_err(|e| e.to_string())?;
    Ok(FlowOutput {
        actions,
        state: Some(state),
    })
}

fn fill(template: &str, customer: &Customer, courier: &str) -> String {
    template
        .replace("{nickname}", &customer.nickname)
        .replace("{courier}", courier)
}

fn chat(customer_id: &str, text: String) -> Action {
    Action::SendMessage(Message {
        customer_id: customer_id.to_string(),
        channel: Channel::Chat,
        text,
    })
}

fn run_step(tag: &str, call: StepCall) -> Action {
    Action::RunStep(RunStep {
        tag: tag.to_string(),
        call,
    })
}

fn plan(customer: &Customer, trigger: RevisitTrigger) -> Action {
    run_step(
        "revisits",
        StepCall::RevisitPlanner(RevisitRequest {
            customer: customer.clone(),
            trigger,
            preferred_channel: None,
        }),
    )
}

fn handle(cfg: &Config, kept: &mut Kept, event: &Event) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    match &event.data {
        EventData::MessageReceived(request) => {
            kept.customer = Some(request.customer.id.clone());
            if cfg.greet {
                out.push(run_step("greeting", StepCall::Greeting(request.clone())));
            }
        }
        EventData::OrderCreated(e) => {
            kept.customer = Some(e.customer.id.clone());
            if kept.advance("created") && !cfg.reminder_message.is_empty() {
                let payload = serde_json::json!({
                    "customer_id": e.customer.id,
                    "nickname": e.customer.nickname,
                });
                out.push(Action::ScheduleTimer(Timer {
                    name: PAYMENT_REMINDER.into(),
                    at: e.order.created_at + cfg.unpaid_reminder_hours * SECS_PER_HOUR,
                    payload: payload.to_string(),
                }));
            }
        }
        EventData::OrderPaid(e) => {
            kept.customer = Some(e.customer.id.clone());
            out.push(Action::CancelTimer(PAYMENT_REMINDER.into()));
            // Paid after it shipped (or was cancelled): the later news
            // stands, nothing to confirm any more.
            if kept.advance("paid") && cfg.confirm_paid_orders {
                out.push(run_step(
                    "confirm",
                    StepCall::OrderConfirmation(confirmation(e)),
                ));
            }
        }
        EventData::OrderShipped(e) => {
            kept.customer = Some(e.customer.id.clone());
            out.push(Action::CancelTimer(PAYMENT_REMINDER.into()));
            if kept.advance("shipped") && !cfg.shipped_message.is_empty() {
                let text = fill(&cfg.shipped_message, &e.customer, &e.order.courier);
                out.push(chat(&e.customer.id, text));
            }
        }
        EventData::OrderDelivered(e) => {
            kept.customer = Some(e.customer.id.clone());
            out.push(Action::CancelTimer(PAYMENT_REMINDER.into()));
            if kept.advance("delivered") && cfg.plan_revisits {
                let mut order = e.order.clone();
                order.delivered_at = order.delivered_at.or(Some(event.at));
                out.push(plan(&e.customer, RevisitTrigger::Delivered(order)));
            }
        }
        EventData::OrderCancelled(e) => {
            kept.customer = Some(e.customer.id.clone());
            kept.advance("cancelled");
            out.push(Action::CancelTimer(PAYMENT_REMINDER.into()));
        }
        EventData::RefundRequested(request) => {
            kept.customer = Some(request.customer.id.clone());
            out.push(run_step("refund", StepCall::RefundPolicy(request.clone())));
        }
        EventData::RefundCompleted(e) => {
            kept.customer = Some(e.customer.id.clone());
            kept.refund_pending = false;
            out.push(Action::CancelTimer(REFUND_CHECK.into()));
            if cfg.plan_revisits {
                out.push(plan(
                    &e.customer,
                    RevisitTrigger::RefundCompleted(e.order.clone()),
                ));
            }
        }
        EventData::ComplaintOpened(c) => {
            complaint_customer(kept, c);
            if !cfg.complaint_ack_message.is_empty() {
                out.push(chat(
                    &c.customer.id,
                    fill(&cfg.complaint_ack_message, &c.customer, ""),
                ));
            }
            out.push(Action::HandOff(format!(
                "complaint {} opened ({})",
                c.complaint.id, c.complaint.cause
            )));
        }
        EventData::ComplaintResolved(c) => {
            complaint_customer(kept, c);
            if cfg.plan_revisits {
                let mut complaint = c.complaint.clone();
                if complaint.resolved_at == 0 {
                    complaint.resolved_at = event.at;
                }
                out.push(plan(
                    &c.customer,
                    RevisitTrigger::ComplaintResolved(complaint),
                ));
            }
        }
        EventData::TimerFired(t) if t.name == PAYMENT_REMINDER => {
            if rank(&kept.status) < rank("paid") && !kept.reminded {
                #[derive(Deserialize)]
                struct Who {
                    customer_id: String,
                    nickname: String,
                }
                let who: Who = serde_json::from_str(&t.payload)
                    .map_err(|e| format!("payment-reminder payload: {e}"))?;
                kept.reminded = true;
                let text = cfg.reminder_message.replace("{nickname}", &who.nickname);
                out.push(chat(&who.customer_id, text));
            }
        }
        EventData::TimerFired(t) if t.name == REFUND_CHECK => {
            if kept.refund_pending {
                out.push(Action::HandOff(format!(
                    "an approved refund has not completed within {} hours",
                    cfg.refund_check_hours
                )));
            }
        }
        EventData::TimerFired(_) => {}
        EventData::RevisitDue(r) if cfg.revisit_messages => {
            out.push(Action::SendMessage(Message {
                customer_id: r.customer_id.clone(),
                channel: r.channel,
                text: r.message.clone(),
            }));
        }
        EventData::RevisitDue(_) => {}
        EventData::StepCompleted(result) => step_completed(cfg, kept, event, result, &mut out),
    }
    Ok(out)
}

fn complaint_customer(kept: &mut Kept, c: &ComplaintEvent) {
    kept.customer = Some(c.customer.id.clone());
}

fn confirmation(e: &OrderEvent) -> ConfirmationRequest {
    ConfirmationRequest {
        order: e.order.clone(),
        customer: e.customer.clone(),
        open_orders: e.open_orders.clone(),
        similar_buyer_ids: e.similar_buyer_ids.clone(),
        agent_name: None,
    }
}

/// What to do with a step's answer.
fn step_completed(
    cfg: &Config,
    kept: &mut Kept,
    event: &Event,
    result: &StepResult,
    out: &mut Vec<Action>,
) {
    let customer = kept
        .customer
        .clone()
        .unwrap_or_else(|| match &event.subject {
            Subject::Customer(id) => id.clone(),
            Subject::Order(_) => String::new(),
        });
    let Some(output) = &result.output else {
        out.push(Action::HandOff(format!(
            "step `{}` failed: {}",
            result.tag, result.error
        )));
        return;
    };
    let mut say = |text: &str| {
        if !text.trim().is_empty() && !customer.is_empty() {
            out.push(chat(&customer, text.to_string()));
        }
    };
    match output {
        StepOutput::Greeting(reply) => {
            say(&reply.reply);
            if reply.hand_off {
                out.push(Action::HandOff("the greeting needs a person".into()));
            }
        }
        StepOutput::OrderConfirmation(c) => {
            say(&c.message);
            let Subject::Order(order_id) = &event.subject else {
                return;
            };
            if let Some(remark) = &c.remark {
                out.push(Action::SetRemark(Remark {
                    order_id: order_id.clone(),
                    remark: remark.clone(),
                }));
            }
            if !c.merge_with.is_empty() {
                out.push(Action::MergeOrders(Merge {
                    order_id: order_id.clone(),
                    others: c.merge_with.clone(),
                }));
            }
            match &c.verdict {
                ConfirmationVerdict::NeedsFix(issues) if cfg.hand_off_on_needs_fix => {
                    let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
                    out.push(Action::HandOff(format!(
                        "order needs fixing: {}",
                        fields.join(", ")
                    )));
                }
                ConfirmationVerdict::Hold(reason) => out.push(Action::Emit(Emit {
                    kind: "order.hold".into(),
                    payload: serde_json::json!({ "order_id": order_id, "reason": reason })
                        .to_string(),
                })),
                _ => {}
            }
        }
        StepOutput::RefundPolicy(d) => {
            say(&d.message);
            match &d.outcome {
                RefundOutcome::Approve => {
                    kept.refund_pending = true;
                    let order_id = match &event.subject {
                        Subject::Order(id) => id.clone(),
                        Subject::Customer(_) => String::new(),
                    };
                    out.push(Action::Emit(Emit {
                        kind: "refund.approve".into(),
                        payload: serde_json::json!({
                            "order_id": order_id,
                            "amount": d.amount,
                            "return_required": d.return_required,
                        })
                        .to_string(),
                    }));
                    out.push(Action::ScheduleTimer(Timer {
                        name: REFUND_CHECK.into(),
                        at: event.at + cfg.refund_check_hours * SECS_PER_HOUR,
                        payload: String::new(),
                    }));
                }
                RefundOutcome::Escalate(reason) => {
                    out.push(Action::HandOff(format!("refund escalated: {reason}")));
                }
                RefundOutcome::Reject(_)
                | RefundOutcome::RequestEvidence(_)
                | RefundOutcome::Explain(_) => {}
            }
        }
        StepOutput::RevisitPlanner(_) => {}
    }
}
