//! Default revisit planner (回访): a satisfaction revisit N days after
//! delivery, follow-ups after complaints and refunds, one payment reminder
//! for unpaid orders, and revisits on special dates; each with a retry
//! policy (three attempts by default, 三次以上周期回访).

wit_bindgen::generate!({
    world: "revisit-planner",
    path: "../../wit",
    // Serde on the generated types lets a native build read the same JSON
    // inputs as the host (benchmarks).
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use kefu::workflow::types::{AttemptPolicy, Channel, OrderStatus, PlannedRevisit, RevisitTrigger};
use kefu::workflow::{clock, config};
use kefu_plugin_common::{SECS_PER_HOUR, ShopTime, load_config};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    shop_name: String,
    timezone_offset_minutes: i32,
    /// Local hour revisits are made at (10 = 10:00): the contact window
    /// opens then...
    contact_hour: u32,
    /// ...and closes at this local hour (21 = 21:00). Nothing is due
    /// outside the window: what would be is moved to its next opening.
    contact_until_hour: u32,
    /// Days after delivery for the satisfaction revisit (N+7).
    delivered_after_days: i64,
    /// Days after a complaint is resolved to confirm satisfaction.
    complaint_after_days: i64,
    /// Days after a refund completes.
    refund_after_days: i64,
    /// Hours after an unpaid order is placed to remind once (催单).
    unpaid_after_hours: i64,
    /// Attempts before a revisit closes as unreachable, and hours between.
    max_attempts: u32,
    retry_after_hours: u32,
    /// Channel when the customer has no preference: chat, phone, sms, email.
    default_channel: String,
    /// Extra revisits after delivery, e.g. 首保 / 二保 reminders.
    follow_ups: Vec<FollowUp>,
    messages: Messages,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUp {
    after_days: i64,
    purpose: String,
    message: String,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Messages {
    satisfaction: String,
    complaint: String,
    refund: String,
    unpaid: String,
    special_date: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            shop_name: "本店".into(),
            timezone_offset_minutes: 480,
            contact_hour: 10,
            contact_until_hour: 21,
            delivered_after_days: 7,
            complaint_after_days: 1,
            refund_after_days: 3,
            unpaid_after_hours: 2,
            max_attempts: 3,
            retry_after_hours: 24,
            default_channel: "chat".into(),
            follow_ups: Vec::new(),
            messages: Messages::default(),
        }
    }
}

impl Default for Messages {
    fn default() -> Self {
        Messages {
            satisfaction: "{nickname}您好，我是{shop}的客服，您收到的宝贝用着还满意吗？有任何问题随时告诉我们哦 :)".into(),
            complaint: "{nickname}您好，之前给您带来不便非常抱歉，想跟您确认一下问题都解决好了吗？您还满意吗？".into(),
            refund: "{nickname}您好，您的退款已经处理完成，想了解一下您对这次处理还满意吗？有什么建议欢迎告诉我们 :)".into(),
            unpaid: "{nickname}您好，您在{shop}拍下的宝贝还没有付款哦，库存有限，需要帮忙可以随时找我 :)".into(),
            special_date: "{nickname}您好，{name}到啦！{shop}为老顾客准备了专属优惠，欢迎回来看看哦 :)".into(),
        }
    }
}

struct Plugin;

impl Guest for Plugin {
    fn plan(req: RevisitRequest) -> Result<RevisitPlan, String> {
        run(&config::get(), &req, clock::now())
    }
}

/// The plugin's rule as a plain function: the shop's config (JSON), the
/// request and the call's time in, the decision out. The export above is
/// this with the host's config and clock.
pub fn run(config_json: &str, req: &RevisitRequest, now: i64) -> Result<RevisitPlan, String> {
    let cfg: Config = load_config(config_json)?;
    plan(&cfg, req, now)
}

export!(Plugin);

fn parse_channel(name: &str) -> Result<Channel, String> {
    Ok(match name {
        "chat" => Channel::Chat,
        "phone" => Channel::Phone,
        "sms" => Channel::Sms,
        "email" => Channel::Email,
        other => {
            return Err(format!(
                "invalid plugin config: default_channel `{other}` is not chat, phone, sms or email"
            ));
        }
    })
}

fn plan(cfg: &Config, req: &RevisitRequest, now: i64) -> Result<RevisitPlan, String> {
    if cfg.contact_hour > 23 {
        return Err(format!(
            "invalid plugin config: contact_hour {} is not 0-23",
            cfg.contact_hour
        ));
    }
    if cfg.contact_until_hour <= cfg.contact_hour || cfg.contact_until_hour > 24 {
        return Err(format!(
            "invalid plugin config: contact_until_hour {} is not after contact_hour {} (and at most 24)",
            cfg.contact_until_hour, cfg.contact_hour
        ));
    }
    let time = ShopTime {
        offset_minutes: cfg.timezone_offset_minutes,
    };
    let channel = match req.preferred_channel {
        Some(c) => c,
        None => parse_channel(&cfg.default_channel)?,
    };
    let attempts = AttemptPolicy {
        max_attempts: cfg.max_attempts.max(1),
        retry_after_hours: cfg.retry_after_hours.max(1),
    };
    let fill = |t: &str, name: &str| {
        t.replace("{nickname}", &req.customer.nickname)
            .replace("{shop}", &cfg.shop_name)
            .replace("{name}", name)
    };
    // The first moment in the contact window at or after `t`, and never
    // before now.
    let (from, until) = (cfg.contact_hour * 60, cfg.contact_until_hour * 60);
    let contact = |t: i64| time.next_in_window(t.max(now), from, until);
    // `days` after the day of `base`, at the contact hour (or, when that
    // is past, the next contact moment).
    let on_day = |base: i64, days: i64| contact(time.at(base, days, cfg.contact_hour, 0));
    let revisit =
        |due_at: i64, purpose: &str, message: String, attempts: AttemptPolicy| PlannedRevisit {
            due_at,
            channel,
            purpose: purpose.to_string(),
            message,
            attempts,
        };

    let m = &cfg.messages;
    let mut revisits = Vec::new();
    match &req.trigger {
        RevisitTrigger::Delivered(order) => {
            let delivered = order.delivered_at.unwrap_or(now);
            revisits.push(revisit(
                on_day(delivered, cfg.delivered_after_days),
                "satisfaction",
                fill(&m.satisfaction, ""),
                attempts,
            ));
            for f in &cfg.follow_ups {
                revisits.push(revisit(
                    on_day(delivered, f.after_days),
                    &f.purpose,
                    fill(&f.message, ""),
                    attempts,
                ));
            }
        }
        RevisitTrigger::ComplaintResolved(c) => {
            revisits.push(revisit(
                on_day(c.resolved_at, cfg.complaint_after_days),
                "complaint-follow-up",
                fill(&m.complaint, ""),
                attempts,
            ));
        }
        RevisitTrigger::RefundCompleted(_) => {
            revisits.push(revisit(
                on_day(now, cfg.refund_after_days),
                "refund-follow-up",
                fill(&m.refund, ""),
                attempts,
            ));
        }
        RevisitTrigger::Unpaid(order) => {
            // Remind once, and only while the order is still unpaid.
            if order.status == OrderStatus::Unpaid {
                let due = contact(
                    order
                        .created_at
                        .saturating_add(cfg.unpaid_after_hours.saturating_mul(SECS_PER_HOUR)),
                );
                let once = AttemptPolicy {
                    max_attempts: 1,
                    retry_after_hours: 0,
                };
                revisits.push(revisit(due, "payment-reminder", fill(&m.unpaid, ""), once));
            }
        }
        RevisitTrigger::SpecialDate(d) => {
            // A date already over plans nothing; today's is made right away.
            if time.day_start(d.date) >= time.day_start(now) {
                revisits.push(revisit(
                    on_day(d.date, 0),
                    &d.kind,
                    fill(&m.special_date, &d.name),
                    attempts,
                ));
            }
        }
    }
    Ok(RevisitPlan { revisits })
}

#[cfg(test)]
mod tests {
    //! The planner's time arithmetic at its edges (#27 items 6 and 7).

    use super::*;

    const DAY: i64 = 86_400;
    /// 2026-11-26 00:00 in China (UTC+8).
    const MIDNIGHT: i64 = 1_795_622_400;
    const CST: ShopTime = ShopTime {
        offset_minutes: 480,
    };

    fn request(trigger: &str, at: i64) -> RevisitRequest {
        let order = serde_json::json!({
            "id": "T1", "buyer_id": "b", "status": if trigger == "Unpaid" { "Unpaid" } else { "Delivered" },
            "items": [], "shipping_fee": 0, "total_paid": 100, "refunded": 0,
            "created_at": at, "paid_at": null, "shipped_at": null, "delivered_at": at,
            "address": {"recipient": "", "phone": "", "province": "", "city": "", "district": "", "detail": ""},
            "buyer_remark": "", "courier": ""
        });
        let trigger = match trigger {
            "ComplaintResolved" => {
                serde_json::json!({"ComplaintResolved": {"id": "c", "cause": "product", "resolved_at": at}})
            }
            "SpecialDate" => {
                serde_json::json!({"SpecialDate": {"kind": "holiday", "name": "店庆", "date": CST.day_start(at)}})
            }
            other => serde_json::json!({ other: order }),
        };
        serde_json::from_value(serde_json::json!({
            "customer": {"id": "b", "nickname": "小王", "member_level": null, "order_count": 0, "returning": false},
            "trigger": trigger,
            "preferred_channel": null
        }))
        .unwrap()
    }

    const TRIGGERS: [&str; 5] = [
        "Delivered",
        "ComplaintResolved",
        "RefundCompleted",
        "Unpaid",
        "SpecialDate",
    ];

    /// Every revisit of every trigger, planned at any minute of two days
    /// for events from a week before to the same moment, is due inside
    /// the contact window and never before now.
    #[test]
    fn nothing_is_ever_due_outside_the_contact_window() {
        for (config, from, until) in [
            ("{}", 10 * 60, 21 * 60),
            (r#"{"contact_hour": 19}"#, 19 * 60, 21 * 60),
            (
                r#"{"contact_hour": 0, "contact_until_hour": 24}"#,
                0,
                24 * 60,
            ),
            (
                r#"{"contact_hour": 8, "contact_until_hour": 9, "unpaid_after_hours": 30}"#,
                8 * 60,
                9 * 60,
            ),
        ] {
            let mut now = MIDNIGHT - DAY / 2;
            while now < MIDNIGHT + 2 * DAY {
                for trigger in TRIGGERS {
                    for ago in [0, 3600, 5 * 3600, DAY, 7 * DAY + 1] {
                        let plan = run(config, &request(trigger, now - ago), now).unwrap();
                        for r in &plan.revisits {
                            let minute = CST.minute_of_day(r.due_at);
                            assert!(
                                r.due_at >= now && (from..until).contains(&minute),
                                "{config} {trigger} event {ago}s before {now}: due {} at minute {minute}",
                                r.due_at
                            );
                        }
                    }
                }
                now += 7 * 60 + 13;
            }
        }
    }

    /// The outside tester's case: delivered in the past, planned at 04:52
    /// with `contact_hour = 19`: due at 19:00 that day, not at once.
    #[test]
    fn a_past_delivery_planned_before_dawn_waits_for_the_contact_hour() {
        let now = MIDNIGHT + 4 * 3600 + 52 * 60;
        let plan = run(
            r#"{"contact_hour": 19, "delivered_after_days": 0}"#,
            &request("Delivered", now - 3 * DAY),
            now,
        )
        .unwrap();
        assert_eq!(plan.revisits[0].due_at, MIDNIGHT + 19 * 3600);
        // Planned at 21:30, after the window: 19:00 the next day.
        let now = MIDNIGHT + 21 * 3600 + 30 * 60;
        let plan = run(
            r#"{"contact_hour": 19}"#,
            &request("Delivered", now - 9 * DAY),
            now,
        )
        .unwrap();
        assert_eq!(plan.revisits[0].due_at, MIDNIGHT + DAY + 19 * 3600);
        // An unpaid reminder two hours after a 23:30 order: 10:00.
        let now = MIDNIGHT - 30 * 60;
        let plan = run("{}", &request("Unpaid", now), now).unwrap();
        assert_eq!(plan.revisits[0].due_at, MIDNIGHT + 10 * 3600);
        // ... and after a 14:00 order: 16:00, inside the window.
        let now = MIDNIGHT + 14 * 3600;
        let plan = run("{}", &request("Unpaid", now), now).unwrap();
        assert_eq!(plan.revisits[0].due_at, now + 2 * 3600);
    }

    /// Times at i64's ends saturate: no panic, nothing wraps into the
    /// past.
    #[test]
    fn extreme_times_saturate() {
        let now = MIDNIGHT;
        for trigger in TRIGGERS {
            for at in [i64::MAX, i64::MAX - 1, i64::MIN, i64::MIN + 1] {
                let plan = run("{}", &request(trigger, at), now).unwrap();
                for r in &plan.revisits {
                    assert!(r.due_at >= now, "{trigger} at {at}: due {}", r.due_at);
                }
            }
        }
    }

    #[test]
    fn a_window_that_closes_before_it_opens_is_refused() {
        for config in [
            r#"{"contact_hour": 19, "contact_until_hour": 19}"#,
            r#"{"contact_hour": 19, "contact_until_hour": 8}"#,
            r#"{"contact_until_hour": 25}"#,
        ] {
            let err = run(config, &request("Delivered", MIDNIGHT), MIDNIGHT).unwrap_err();
            assert!(err.contains("contact_until_hour"), "{err}");
        }
    }
}
