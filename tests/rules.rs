//! The domain rules of `shared/domain.md`, case by case, through the real
//! `kefu run` on the default plugins and the example requests.

mod support;

use serde_json::json;
use support::{Run, output, run_example, text};

// Times are in the shops' zone, UTC+8.
const MORNING: &str = "2026-11-20T10:00:00+08:00";

fn run(step: &str, case: &str, now: &str) -> serde_json::Value {
    output(&run_example(
        step,
        case,
        Run {
            now,
            ..Run::default()
        },
    ))
    .clone()
}

fn run_shop(step: &str, case: &str, now: &str, shop: &str) -> serde_json::Value {
    output(&run_example(
        step,
        case,
        Run {
            now,
            shop: Some(shop),
            ..Run::default()
        },
    ))
    .clone()
}

// ------------------------------------------------------------ greeting

#[test]
fn first_visit_gets_the_standard_welcome() {
    let out = run("greeting", "first-visit", MORNING);
    assert_eq!(
        text(&out, "reply"),
        "您好，欢迎光临本店，我是客服小美，很高兴为您效劳，请问有什么可以为您服务 :)"
    );
    assert_eq!(out["hand_off"], false);
    assert_eq!(out["off_hours"], false);
    let shop = run_shop("greeting", "first-visit", MORNING, "tea-oil");
    assert!(text(&shop, "reply").contains("欢迎光临山野茶油旗舰店，我是客服慧兰"));
}

#[test]
fn returning_member_is_greeted_as_such() {
    let out = run("greeting", "returning-member", MORNING);
    assert!(
        text(&out, "reply").starts_with("尊敬的金卡会员小王，欢迎回来！"),
        "{out}"
    );
    assert_eq!(out["hand_off"], false, "small talk needs no person");
}

#[test]
fn off_hours_auto_reply_says_when_an_agent_is_back() {
    let out = run("greeting", "first-visit", "2026-11-21T02:00:00+08:00");
    assert_eq!(out["off_hours"], true);
    let reply = text(&out, "reply");
    assert!(
        reply.contains("非工作时间") && reply.contains("今天08:30") && reply.contains("留言"),
        "{reply}"
    );
    // The apparel shop closes at 22:00 and opens at 09:00.
    let late = run_shop(
        "greeting",
        "first-visit",
        "2026-11-20T23:30:00+08:00",
        "apparel",
    );
    assert_eq!(late["off_hours"], true);
    assert!(text(&late, "reply").contains("明天09:00"));
    // Within the night shift (16:30-24:00) the default shop answers.
    let night = run("greeting", "first-visit", "2026-11-20T23:30:00+08:00");
    assert_eq!(night["off_hours"], false);
}

#[test]
fn discount_requests_get_the_price_policy_not_a_refusal() {
    let out = run("greeting", "discount", MORNING);
    assert_eq!(out["matched_keywords"], json!(["便宜"]));
    assert!(text(&out, "reply").contains("没有改价权限") && text(&out, "reply").contains("赠品"));
    assert_eq!(out["hand_off"], false);
}

#[test]
fn several_keywords_answer_in_table_order() {
    let out = run("greeting", "genuine-and-courier", MORNING);
    assert_eq!(out["matched_keywords"], json!(["正品", "快递"]));
    assert!(text(&out, "reply").contains("中通快递"));
    let tea = run_shop("greeting", "genuine-and-courier", MORNING, "tea-oil");
    assert!(
        text(&tea, "reply").contains("顺丰快递"),
        "shop config sets the courier"
    );
}

#[test]
fn complaints_and_unanswerable_questions_go_to_a_person() {
    let out = run("greeting", "complaint", MORNING);
    assert_eq!(out["hand_off"], true);
    assert!(text(&out, "reply").contains("转接人工"));
    let unknown = run("greeting", "unknown-question", MORNING);
    assert_eq!(
        unknown["hand_off"], true,
        "nothing matched: a person must answer"
    );
    // The tea-oil shop has a keyword reply for it.
    let tea = run_shop("greeting", "unknown-question", MORNING, "tea-oil");
    assert_eq!(tea["hand_off"], false);
    assert_eq!(tea["matched_keywords"], json!(["凉拌"]));
}

// -------------------------------------------------- order confirmation

#[test]
fn good_order_is_confirmed_with_remark_and_merge() {
    let out = run("order-confirmation", "ok-with-remark", MORNING);
    assert_eq!(out["verdict"], "Ok");
    assert_eq!(
        out["remark"],
        json!({"text": "发邮政快递_慧兰", "flag": "Red"})
    );
    // Same buyer and address merges; another address does not.
    assert_eq!(out["merge_with"], json!(["T20261118002"]));
    let msg = text(&out, "message");
    assert!(
        msg.contains("野生山茶油500ml（500ml） x2，¥128.00"),
        "{msg}"
    );
    assert!(msg.contains("快递单号") && msg.contains("浙江省杭州市西湖区"));
}

#[test]
fn invalid_phone_and_incomplete_address_are_flagged() {
    let out = run("order-confirmation", "bad-phone-and-address", MORNING);
    let issues = out["verdict"]["NeedsFix"].as_array().expect("needs-fix");
    let kinds: Vec<&str> = issues.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["InvalidPhone", "IncompleteAddress"]);
    assert_eq!(issues[0]["field"], "order.address.phone");
    assert!(text(&issues[1], "detail").contains("district, detail"));
    assert!(text(&out, "message").contains("11位手机号"));
}

#[test]
fn twin_accounts_must_be_confirmed() {
    let out = run("order-confirmation", "twin-account", MORNING);
    let issues = out["verdict"]["NeedsFix"].as_array().expect("needs-fix");
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0]["kind"], "TwinAccount");
    let detail = text(&issues[0], "detail");
    assert!(
        detail.contains("tb_xiaowang1") && !detail.contains("tb_xiaowang,"),
        "{detail}"
    );
}

#[test]
fn unpaid_order_is_reminded_once_after_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let at = |now| {
        output(&run_example(
            "order-confirmation",
            "unpaid",
            Run {
                now,
                state: Some(&state),
                ..Run::default()
            },
        ))
        .clone()
    };
    // Placed at 06:00; the default reminder waits 2 hours.
    let early = at("2026-11-20T07:00:00+08:00");
    assert!(text(&early["verdict"], "Hold").starts_with("unpaid: reminder due"));
    assert_eq!(early["message"], "");
    let first = at(MORNING);
    assert_eq!(first["verdict"]["Hold"], "unpaid: payment reminder sent");
    assert!(text(&first, "message").contains("还没有付款"));
    let again = at("2026-11-20T12:00:00+08:00");
    assert_eq!(again["verdict"]["Hold"], "unpaid: already reminded once");
    assert_eq!(again["message"], "", "remind once only");
}

// ------------------------------------------------------- refund policy

fn outcome(out: &serde_json::Value) -> String {
    match &out["outcome"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) => m.keys().next().unwrap().clone(),
        other => panic!("odd outcome {other}"),
    }
}

#[test]
fn unshipped_order_is_refunded_in_full_at_once() {
    let out = run("refund-policy", "unshipped", MORNING);
    assert_eq!(outcome(&out), "Approve");
    assert_eq!(out["amount"], 12800);
    assert_eq!(out["return_required"], false);
}

#[test]
fn no_reason_return_day_6_approved_day_8_rejected() {
    // Delivered 2026-11-20 14:00.
    let day6 = run("refund-policy", "no-reason", "2026-11-26T14:00:00+08:00");
    assert_eq!(outcome(&day6), "Approve");
    assert_eq!(day6["amount"], 12800);
    assert_eq!(day6["return_required"], true);
    assert_eq!(
        day6["return_shipping"], "Insurance",
        "the order has shipping insurance"
    );
    let day8 = run("refund-policy", "no-reason", "2026-11-28T14:00:00+08:00");
    assert_eq!(outcome(&day8), "Reject");
    assert_eq!(day8["amount"], 0);
    // The apparel shop allows 15 days.
    let apparel = run_shop(
        "refund-policy",
        "no-reason",
        "2026-11-28T14:00:00+08:00",
        "apparel",
    );
    assert_eq!(outcome(&apparel), "Approve");
}

#[test]
fn final_sale_items_have_no_no_reason_return() {
    let out = run(
        "refund-policy",
        "no-reason-final-sale",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(outcome(&out), "Reject");
    assert!(text(&out["outcome"], "Reject").contains("CY-GIFT"));
}

#[test]
fn quality_claim_without_photos_asks_for_evidence() {
    let out = run(
        "refund-policy",
        "quality-no-photos",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(outcome(&out), "RequestEvidence");
    assert!(text(&out, "message").contains("照片"));
    let with = run(
        "refund-policy",
        "quality-with-photos",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(outcome(&with), "Approve");
    assert_eq!(
        with["return_shipping"], "Shop",
        "the shop pays for quality problems"
    );
}

#[test]
fn amount_over_the_threshold_escalates() {
    let out = run(
        "refund-policy",
        "over-threshold",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(outcome(&out), "Escalate");
    assert!(text(&out["outcome"], "Escalate").contains("68000"));
    // The apparel shop's threshold is 1000 yuan.
    let apparel = run_shop(
        "refund-policy",
        "over-threshold",
        "2026-11-21T10:00:00+08:00",
        "apparel",
    );
    assert_eq!(outcome(&apparel), "Approve");
}

#[test]
fn repeat_refunders_escalate() {
    let out = run(
        "refund-policy",
        "repeat-refunder",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(outcome(&out), "Escalate");
}

#[test]
fn parcels_not_received_follow_logistics() {
    let lost = run("refund-policy", "lost-parcel", MORNING);
    assert_eq!(outcome(&lost), "Approve");
    assert_eq!(lost["amount"], 12800);
    let moving = run("refund-policy", "in-transit", MORNING);
    assert_eq!(outcome(&moving), "Reject");
    assert!(text(&moving, "message").contains("运输途中"));
}

#[test]
fn misunderstanding_is_explained_before_any_refund() {
    let out = run(
        "refund-policy",
        "misunderstanding",
        "2026-11-21T10:00:00+08:00",
    );
    assert_eq!(outcome(&out), "Explain");
    assert_eq!(out["amount"], 0);
}

#[test]
fn wrong_item_is_exchanged_at_the_shops_cost() {
    let out = run("refund-policy", "wrong-item", "2026-11-21T10:00:00+08:00");
    assert_eq!(outcome(&out), "Approve");
    assert_eq!(out["amount"], 0, "an exchange refunds nothing");
    assert_eq!(out["return_required"], true);
    assert_eq!(out["return_shipping"], "Shop");
}

// ---------------------------------------------------- revisit planner

#[test]
fn delivered_order_gets_a_revisit_at_delivery_plus_7_days_with_retries() {
    let out = run("revisit-planner", "delivered", MORNING);
    let revisits = out["revisits"].as_array().unwrap();
    assert_eq!(revisits.len(), 1);
    // Delivered 2026-11-20; revisit 2026-11-27 10:00 (UTC+8).
    assert_eq!(revisits[0]["due_at"], 1795744800);
    assert_eq!(revisits[0]["purpose"], "satisfaction");
    assert_eq!(revisits[0]["channel"], "Chat");
    assert_eq!(
        revisits[0]["attempts"],
        json!({"max_attempts": 3, "retry_after_hours": 24})
    );
    // The tea-oil shop adds a refill reminder 60 days out.
    let tea = run_shop("revisit-planner", "delivered", MORNING, "tea-oil");
    let purposes: Vec<&str> = tea["revisits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["satisfaction", "refill"]);
}

#[test]
fn resolved_complaint_is_revisited_the_next_day_by_phone() {
    let out = run("revisit-planner", "complaint-resolved", MORNING);
    let r = &out["revisits"][0];
    assert_eq!(r["due_at"], 1795226400, "2026-11-21 10:00");
    assert_eq!(r["channel"], "Phone");
    assert_eq!(r["purpose"], "complaint-follow-up");
}

#[test]
fn unpaid_order_gets_one_reminder() {
    let out = run("revisit-planner", "unpaid", MORNING);
    let r = &out["revisits"][0];
    assert_eq!(r["due_at"], 1795145400, "placed 09:30 + 2 h");
    assert_eq!(r["attempts"]["max_attempts"], 1);
}

#[test]
fn shop_anniversary_is_planned_on_its_day_and_past_dates_plan_nothing() {
    let out = run("revisit-planner", "anniversary", MORNING);
    let r = &out["revisits"][0];
    assert_eq!(r["due_at"], 1796695200, "2026-12-08 10:00");
    assert_eq!(r["purpose"], "anniversary");
    assert!(text(r, "message").contains("店庆"));
    let after = run(
        "revisit-planner",
        "anniversary",
        "2026-12-09T10:00:00+08:00",
    );
    assert_eq!(after["revisits"], json!([]));
}
