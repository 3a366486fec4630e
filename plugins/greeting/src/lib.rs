//! Default greeting plugin (进门问好 / 自动回复): the standard welcome,
//! returning customers and members greeted as such, keyword replies,
//! hand-off to a human, and the off-hours auto-reply.

// The generated bindings take many arguments; not ours to shorten.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({
    world: "greeting",
    path: "../../wit",
    // Serde on the generated types lets a native build read the same JSON
    // inputs as the host (benchmarks).
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use kefu::workflow::{clock, config};
use kefu_plugin_common::{ShopTime, Text, fill, format_hhmm, load_config, parse_hhmm};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The shop's greeting rules. Texts borrow from the config JSON and every
/// default is a static text, so reading the config allocates only its
/// lists: the plugin reads it afresh on every call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config<'a> {
    #[serde(borrow, default = "d::shop_name")]
    shop_name: Text<'a>,
    #[serde(borrow, default = "d::agent_name")]
    agent_name: Text<'a>,
    #[serde(default = "d::timezone_offset_minutes")]
    timezone_offset_minutes: i32,
    /// Staffed shifts, "HH:MM"-"HH:MM" local; an end before the start runs
    /// past midnight (e.g. 17:00-01:00).
    #[serde(borrow, default = "d::shifts")]
    shifts: Vec<Shift<'a>>,
    #[serde(borrow, default = "d::welcome")]
    welcome: Text<'a>,
    #[serde(borrow, default = "d::returning_welcome")]
    returning_welcome: Text<'a>,
    #[serde(borrow, default = "d::member_welcome")]
    member_welcome: Text<'a>,
    #[serde(borrow, default = "d::offline_reply")]
    offline_reply: Text<'a>,
    #[serde(borrow, default = "d::handoff_reply")]
    handoff_reply: Text<'a>,
    /// Keyword replies (关键词回复), checked in order.
    #[serde(borrow, default = "d::keywords")]
    keywords: Vec<KeywordReply<'a>>,
    /// Words that ask for a person (人工, 投诉...).
    #[serde(borrow, default = "d::handoff_keywords")]
    handoff_keywords: Vec<Text<'a>>,
    /// Words that are only a greeting and need no answer of their own.
    #[serde(borrow, default = "d::small_talk")]
    small_talk: Vec<Text<'a>>,
    #[serde(borrow, default = "d::quick_replies")]
    quick_replies: Vec<Text<'a>>,
    #[serde(borrow, default = "d::courier")]
    courier: Text<'a>,
    #[serde(borrow, default = "d::delivery_days")]
    delivery_days: Text<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Shift<'a> {
    #[serde(borrow)]
    start: Text<'a>,
    #[serde(borrow)]
    end: Text<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeywordReply<'a> {
    #[serde(borrow)]
    keywords: Vec<Text<'a>>,
    #[serde(borrow)]
    reply: Text<'a>,
    /// Quick replies to show instead of the default ones when this entry
    /// matches (the first matching entry that has some wins).
    #[serde(borrow, default)]
    quick_replies: Option<Vec<Text<'a>>>,
}

/// The defaults of every config key.
mod d {
    use super::{KeywordReply, Shift, Text};

    fn texts(words: &[&'static str]) -> Vec<Text<'static>> {
        words.iter().map(|&w| Text::Borrowed(w)).collect()
    }

    pub fn shop_name() -> Text<'static> {
        "本店".into()
    }
    pub fn agent_name() -> Text<'static> {
        "小美".into()
    }
    pub fn timezone_offset_minutes() -> i32 {
        480
    }
    pub fn shifts() -> Vec<Shift<'static>> {
        vec![
            Shift {
                start: "08:30".into(),
                end: "17:00".into(),
            },
            Shift {
                start: "16:30".into(),
                end: "24:00".into(),
            },
        ]
    }
    pub fn welcome() -> Text<'static> {
        "您好，欢迎光临{shop}，我是客服{agent}，很高兴为您效劳，请问有什么可以为您服务 :)".into()
    }
    pub fn returning_welcome() -> Text<'static> {
        "{nickname}您好，欢迎回来！我是客服{agent}，很高兴再次为您服务，请问有什么可以帮您 :)"
            .into()
    }
    pub fn member_welcome() -> Text<'static> {
        "尊敬的{level}{nickname}，欢迎回来！我是客服{agent}，很高兴为您服务，请问有什么可以帮您 :)"
            .into()
    }
    pub fn offline_reply() -> Text<'static> {
        "您好，欢迎光临{shop}！现在是非工作时间，客服将于{next_open}上线，您的留言我们已经收到，上线后会第一时间回复您，请您谅解 :)".into()
    }
    pub fn handoff_reply() -> Text<'static> {
        "请您稍等，正在为您转接人工客服 :)".into()
    }
    pub fn keywords() -> Vec<KeywordReply<'static>> {
        let kw = |words: &[&'static str], reply: &'static str| KeywordReply {
            keywords: texts(words),
            reply: reply.into(),
            quick_replies: None,
        };
        vec![
            kw(
                &["正品", "真的吗", "假货", "假的"],
                "请您放心，本店商品均为品牌授权正品，有正规渠道备案，支持验货 :)",
            ),
            kw(
                &["便宜", "优惠", "打折", "少点", "折扣", "包邮吗"],
                "亲，价格是公司统一制定的，客服没有改价权限哦。现在满额有赠品、满包邮，多件搭配购买更划算，您可以看看哦 :)",
            ),
            kw(
                &["快递", "几天到", "发货", "什么时候到"],
                "亲，我们默认发{courier}，付款后48小时内发货，一般{delivery_days}天送达 :)",
            ),
        ]
    }
    pub fn handoff_keywords() -> Vec<Text<'static>> {
        texts(&["人工", "投诉", "差评", "举报"])
    }
    pub fn small_talk() -> Vec<Text<'static>> {
        texts(&[
            "在吗",
            "在不在",
            "你好",
            "您好",
            "hello",
            "hi",
            "亲",
            "客服",
        ])
    }
    pub fn quick_replies() -> Vec<Text<'static>> {
        texts(&["查询物流", "退换货", "优惠活动", "联系人工"])
    }
    pub fn courier() -> Text<'static> {
        "中通快递".into()
    }
    pub fn delivery_days() -> Text<'static> {
        "2-4".into()
    }
}

struct Plugin;

impl Guest for Plugin {
    fn greet(req: GreetingRequest) -> Result<GreetingReply, String> {
        run(&config::get(), &req, clock::now())
    }
}

/// The plugin's rule as a plain function: the shop's config (JSON), the
/// request and the call's time in, the decision out. The export above is
/// this with the host's config and clock.
pub fn run(config_json: &str, req: &GreetingRequest, now: i64) -> Result<GreetingReply, String> {
    let cfg: Config = load_config(config_json)?;
    greet(&cfg, req, now)
}

export!(Plugin);

fn greet(cfg: &Config, req: &GreetingRequest, now: i64) -> Result<GreetingReply, String> {
    let time = ShopTime {
        offset_minutes: cfg.timezone_offset_minutes,
    };
    let shifts = cfg
        .shifts
        .iter()
        .map(|s| Ok((parse_hhmm(&s.start)?, parse_hhmm(&s.end)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let c = &req.customer;
    let mut vars: BTreeMap<&str, &str> = BTreeMap::from([
        ("shop", &*cfg.shop_name),
        (
            "agent",
            req.agent_name.as_deref().unwrap_or(&cfg.agent_name),
        ),
        ("nickname", &c.nickname),
        ("level", c.member_level.as_deref().unwrap_or_default()),
        ("courier", &cfg.courier),
        ("delivery_days", &cfg.delivery_days),
    ]);
    let message = req.message.trim();
    let mut matched = Vec::new();
    let mut answers = Vec::new();
    let mut quick_replies: Option<&Vec<Text>> = None;
    for entry in &cfg.keywords {
        let hit = entry
            .keywords
            .iter()
            .find(|k| !k.is_empty() && message.contains(k.as_ref()));
        if let Some(word) = hit {
            matched.push(word.to_string());
            answers.push(fill(&entry.reply, &vars));
            quick_replies = quick_replies.or(entry.quick_replies.as_ref());
        }
    }
    let quick_replies = quick_replies
        .unwrap_or(&cfg.quick_replies)
        .iter()
        .map(|q| q.to_string())
        .collect();
    let wants_person = cfg
        .handoff_keywords
        .iter()
        .any(|k| !k.is_empty() && message.contains(k.as_ref()));
    let unanswered = answers.is_empty() && !is_small_talk(message, &cfg.small_talk);
    let minute = time.minute_of_day(now);

    if !shifts.iter().any(|&(s, e)| in_shift(minute, s, e)) {
        let next_open = next_open(minute, &shifts);
        vars.insert("next_open", &next_open);
        let mut reply = fill(&cfg.offline_reply, &vars);
        for a in &answers {
            reply.push('\n');
            reply.push_str(a);
        }
        return Ok(GreetingReply {
            reply,
            quick_replies,
            // Whatever the auto-reply could not answer waits for a person.
            hand_off: wants_person || unanswered,
            matched_keywords: matched,
            off_hours: true,
        });
    }

    let template = if c.member_level.as_deref().is_some_and(|l| !l.is_empty())
        && (c.returning || c.order_count > 0)
    {
        &cfg.member_welcome
    } else if c.returning || c.order_count > 0 {
        &cfg.returning_welcome
    } else {
        &cfg.welcome
    };
    let mut reply = fill(template, &vars);
    for a in &answers {
        reply.push('\n');
        reply.push_str(a);
    }
    if wants_person {
        reply.push('\n');
        reply.push_str(&fill(&cfg.handoff_reply, &vars));
    }
    Ok(GreetingReply {
        reply,
        quick_replies,
        hand_off: wants_person || unanswered,
        matched_keywords: matched,
        off_hours: false,
    })
}

/// Whether `minute` (since local midnight) falls in the shift; an end at
/// or before the start means the shift runs past midnight.
fn in_shift(minute: u32, start: u32, end: u32) -> bool {
    if start < end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    }
}

/// The next shift start after `minute`, as "HH:MM" (prefixed 明天 when it
/// is tomorrow).
fn next_open(minute: u32, shifts: &[(u32, u32)]) -> String {
    let today = shifts.iter().map(|&(s, _)| s).filter(|&s| s > minute).min();
    match today {
        Some(s) => format!("今天{}", format_hhmm(s)),
        None => match shifts.iter().map(|&(s, _)| s).min() {
            Some(s) => format!("明天{}", format_hhmm(s)),
            None => "工作时间".into(),
        },
    }
}

/// A message that is only a greeting ("在吗", "您好~") or nothing at all.
fn is_small_talk(message: &str, words: &[Text]) -> bool {
    if message.chars().all(|c| !c.is_alphanumeric()) {
        return true;
    }
    let mut rest = message.to_lowercase();
    for w in words {
        let w = if w.chars().any(char::is_uppercase) {
            Text::Owned(w.to_lowercase())
        } else {
            Text::Borrowed(&**w)
        };
        if !w.is_empty() && rest.contains(&*w) {
            rest = rest.replace(&*w, "");
        }
    }
    rest.chars().all(|c| !c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    //! Shift arithmetic at its edges (#27 item 6): shift starts and ends,
    //! midnight, shifts past midnight, the UTC day boundary (08:00 in
    //! China) and times at i64's ends.

    use super::*;

    /// 2026-11-26 00:00 in China (UTC+8).
    const MIDNIGHT: i64 = 1_795_622_400;

    fn off_hours(config: &str, now: i64) -> (bool, String) {
        let req: GreetingRequest = serde_json::from_value(serde_json::json!({
            "customer": {"id": "b", "nickname": "小王", "member_level": null, "order_count": 0, "returning": false},
            "message": "在吗",
            "agent_name": null
        }))
        .unwrap();
        let reply = run(config, &req, now).unwrap();
        (reply.off_hours, reply.reply)
    }

    #[test]
    fn shifts_start_inclusive_end_exclusive_and_may_run_past_midnight() {
        assert!(in_shift(9 * 60, 9 * 60, 18 * 60));
        assert!(!in_shift(18 * 60, 9 * 60, 18 * 60));
        assert!(!in_shift(9 * 60 - 1, 9 * 60, 18 * 60));
        assert!(in_shift(0, 22 * 60, 2 * 60));
        assert!(in_shift(23 * 60 + 59, 22 * 60, 2 * 60));
        assert!(!in_shift(2 * 60, 22 * 60, 2 * 60));
        assert_eq!(next_open(3 * 60, &[(22 * 60, 2 * 60)]), "今天22:00");
        assert_eq!(next_open(23 * 60, &[(9 * 60, 18 * 60)]), "明天09:00");
        assert_eq!(next_open(0, &[(9 * 60, 18 * 60)]), "今天09:00");
    }

    #[test]
    fn off_hours_follow_the_shop_clock_across_the_utc_day_boundary() {
        let config = r#"{"shifts": [{"start": "08:00", "end": "24:00"}]}"#;
        let h = |hours: i64, minutes: i64| MIDNIGHT + hours * 3600 + minutes * 60;
        assert!(off_hours(config, h(7, 59)).0);
        assert!(!off_hours(config, h(8, 0)).0, "08:00 China is 00:00 UTC");
        assert!(!off_hours(config, h(23, 59)).0);
        let (off, reply) = off_hours(config, h(24, 0));
        assert!(off, "midnight is off hours");
        assert!(reply.contains("今天08:00"), "{reply}");
        for now in [i64::MAX, i64::MIN, 0] {
            off_hours(config, now); // no panic
        }
    }
}
