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
    /// Local hour revisits are made at (10 = 10:00).
    contact_hour: u32,
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
    // `days` after the day of `base`, at the contact hour; never before now.
    let on_day = |base: i64, days: i64| time.at(base, days, cfg.contact_hour, 0).max(now);
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
                let due = (order.created_at + cfg.unpaid_after_hours * SECS_PER_HOUR).max(now);
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
