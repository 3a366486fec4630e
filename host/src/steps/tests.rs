//! The steps' own rules, checked through the generic dispatch: each step's
//! check of an answer against its request, and the order of `Step::ALL`.

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

#[test]
fn all_lists_the_steps_in_declaration_order() {
    // `step as usize` indexes arrays laid out in `Step::ALL` order.
    for (i, step) in Step::ALL.into_iter().enumerate() {
        assert_eq!(step as usize, i, "{step:?}");
    }
}

#[test]
fn names_endpoints_and_exports_are_the_steps_own() {
    let names: Vec<(&str, &str, &str)> = Step::ALL
        .iter()
        .map(|s| (s.world(), s.export(), s.endpoint()))
        .collect();
    assert_eq!(
        names,
        [
            ("greeting", "greet", "greeting"),
            ("order-confirmation", "confirm", "order-confirmation"),
            ("refund-policy", "decide", "refund-decision"),
            ("revisit-planner", "plan", "revisit-plan"),
            ("workflow", "handle", "workflow"),
        ]
    );
    for step in Step::ALL {
        assert_eq!(step.world().parse::<Step>().unwrap(), step);
        assert_eq!(Step::from_name_or_endpoint(step.endpoint()), Some(step));
        assert!(step.default_plugin().starts_with(b"\0asm"));
        assert_eq!(step.sample().step(), step);
    }
    let err = "farewell".parse::<Step>().unwrap_err().to_string();
    assert!(
        err.contains("greeting, order-confirmation, refund-policy, revisit-planner, workflow"),
        "{err}"
    );
}

/// #27 item 7: an input time no real order has is refused before any
/// plugin runs, naming the field; the edges of the range are accepted.
#[test]
fn input_times_outside_the_sane_range_are_refused_naming_the_field() {
    let with = |step: Step, pointer: &str, t: i64| {
        let mut value: serde_json::Value = serde_json::from_str(step.consts().sample).unwrap();
        *value.pointer_mut(pointer).unwrap() = serde_json::json!(t);
        step.parse_input(value.to_string().as_bytes())
    };
    let cases = [
        (
            Step::RefundPolicy,
            "/order/delivered_at",
            "order.delivered_at",
        ),
        (Step::RefundPolicy, "/order/created_at", "order.created_at"),
        (Step::OrderConfirmation, "/order/paid_at", "order.paid_at"),
    ];
    for (step, pointer, path) in cases {
        for bad in [
            i64::MAX,
            i64::MIN,
            -1,
            0,
            times::MAX_TIME,
            1_795_154_400_000,
        ] {
            let err = with(step, pointer, bad).expect_err(&format!("{step} {pointer}={bad}"));
            assert_eq!(err.path, path, "{}", err.message);
            assert!(err.message.contains(&bad.to_string()), "{}", err.message);
        }
        for good in [times::MIN_TIME, times::MAX_TIME - 1, 1_795_154_400] {
            with(step, pointer, good).unwrap_or_else(|e| panic!("{step} {pointer}={good}: {e:?}"));
        }
    }
    let sample: serde_json::Value =
        serde_json::from_str(Step::RevisitPlanner.consts().sample).unwrap();
    let trigger = sample["trigger"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    let pointer = match trigger.as_str() {
        "Delivered" | "Unpaid" | "RefundCompleted" => format!("/trigger/{trigger}/created_at"),
        "ComplaintResolved" => "/trigger/ComplaintResolved/resolved_at".into(),
        _ => "/trigger/SpecialDate/date".into(),
    };
    let err = with(Step::RevisitPlanner, &pointer, i64::MAX).unwrap_err();
    assert!(
        err.path.starts_with(&format!("trigger.{trigger}")),
        "{}",
        err.path
    );
}
