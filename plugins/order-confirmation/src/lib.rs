//! Default order-confirmation plugin (确认订单): check goods, recipient,
//! phone and address; spot twin accounts and mergeable orders; put the
//! buyer's request on the order with a red flag; remind unpaid orders once.

wit_bindgen::generate!({
    world: "order-confirmation",
    path: "../../wit",
    // Serde on the generated types lets a native build read the same JSON
    // inputs as the host (benchmarks).
    additional_derives: [serde::Serialize, serde::Deserialize],
});

use kefu::workflow::types::{
    Address, ConfirmationVerdict, FlagColor, IssueKind, Order, OrderIssue, OrderRemark, OrderStatus,
};
use kefu::workflow::{clock, config, log, state};
use kefu_plugin_common::{SECS_PER_HOUR, Text, fill, load_config, yuan};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The shop's confirmation rules. Texts borrow from the config JSON and
/// every default is a static text, so reading the config (on every call)
/// allocates nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config<'a> {
    #[serde(borrow, default = "d::shop_name")]
    shop_name: Text<'a>,
    #[serde(borrow, default = "d::agent_name")]
    agent_name: Text<'a>,
    /// Hours after an order is placed before the one payment reminder (催付).
    #[serde(default = "d::unpaid_remind_after_hours")]
    unpaid_remind_after_hours: u32,
    /// Fewest characters a street detail may have to count as complete.
    #[serde(default = "d::min_address_detail_chars")]
    min_address_detail_chars: usize,
    /// Ship other paid orders of the buyer to the same address together.
    #[serde(default = "d::merge_orders")]
    merge_orders: bool,
    /// Flag colour for a buyer's request remark (小红旗 by default).
    #[serde(borrow, default = "d::remark_flag")]
    remark_flag: Text<'a>,
    #[serde(borrow, default = "d::confirm_message")]
    confirm_message: Text<'a>,
    #[serde(borrow, default = "d::fix_message")]
    fix_message: Text<'a>,
    #[serde(borrow, default = "d::unpaid_message")]
    unpaid_message: Text<'a>,
    #[serde(borrow, default = "d::merge_note")]
    merge_note: Text<'a>,
}

/// The defaults of every config key.
mod d {
    use super::Text;

    pub fn shop_name() -> Text<'static> {
        "本店".into()
    }
    pub fn agent_name() -> Text<'static> {
        "客服".into()
    }
    pub fn unpaid_remind_after_hours() -> u32 {
        2
    }
    pub fn min_address_detail_chars() -> usize {
        4
    }
    pub fn merge_orders() -> bool {
        true
    }
    pub fn remark_flag() -> Text<'static> {
        "red".into()
    }
    pub fn confirm_message() -> Text<'static> {
        "亲，跟您核对一下订单信息：\n{items}\n收货人：{recipient}，电话：{phone}\n地址：{address}\n信息无误的话我们会尽快为您发货，发货后会第一时间把快递单号发给您哦 :)".into()
    }
    pub fn fix_message() -> Text<'static> {
        "亲，您的订单信息需要确认一下：{problems}。麻烦您核对后回复我们，我们好尽快为您发货，谢谢 :)".into()
    }
    pub fn unpaid_message() -> Text<'static> {
        "亲，您在{shop}拍下的宝贝还没有付款哦，库存有限，付款后我们会尽快为您发货，有任何问题都可以问我哦 :)".into()
    }
    pub fn merge_note() -> Text<'static> {
        "您还有{count}笔订单会和这笔合并发货，帮您省运费哦。".into()
    }
}

struct Plugin;

impl Guest for Plugin {
    fn confirm(req: ConfirmationRequest) -> Result<Confirmation, String> {
        run(&config::get(), &req, clock::now())
    }
}

/// The plugin's rule as a plain function: the shop's config (JSON), the
/// request and the call's time in, the decision out. The export above is
/// this with the host's config and clock.
pub fn run(config_json: &str, req: &ConfirmationRequest, now: i64) -> Result<Confirmation, String> {
    let cfg: Config = load_config(config_json)?;
    confirm(&cfg, req, now)
}

export!(Plugin);

fn confirm(cfg: &Config, req: &ConfirmationRequest, now: i64) -> Result<Confirmation, String> {
    let order = &req.order;
    let agent = req.agent_name.as_deref().unwrap_or(&cfg.agent_name);
    let vars = BTreeMap::from([("shop", cfg.shop_name.to_string())]);
    let hold = |reason: String, message: String| Confirmation {
        verdict: ConfirmationVerdict::Hold(reason),
        message,
        remark: None,
        merge_with: Vec::new(),
    };
    match order.status {
        OrderStatus::Unpaid => return Ok(unpaid(cfg, order, now, &vars)),
        OrderStatus::Paid => {}
        other => {
            return Ok(hold(
                format!("order is {other:?}, nothing to confirm before shipping"),
                String::new(),
            ));
        }
    }

    let mut issues = Vec::new();
    check_items(order, &mut issues);
    check_address(&order.address, cfg.min_address_detail_chars, &mut issues);
    let twins: Vec<&str> = req
        .similar_buyer_ids
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && *s != order.buyer_id)
        .collect();
    if !twins.is_empty() {
        issues.push(OrderIssue {
            kind: IssueKind::TwinAccount,
            field: "similar-buyer-ids".into(),
            detail: format!(
                "buyer {} has look-alike accounts ({}): confirm which account the order is for",
                order.buyer_id,
                twins.join(", ")
            ),
        });
    }

    let remark = (!order.buyer_remark.trim().is_empty()).then(|| OrderRemark {
        text: format!("{}_{}", order.buyer_remark.trim(), agent),
        flag: parse_flag(&cfg.remark_flag),
    });
    let merge_with: Vec<String> = if cfg.merge_orders {
        req.open_orders
            .iter()
            .filter(|o| {
                o.id != order.id
                    && o.buyer_id == order.buyer_id
                    && o.status == OrderStatus::Paid
                    && same_address(&o.address, &order.address)
            })
            .map(|o| o.id.clone())
            .collect()
    } else {
        Vec::new()
    };

    if !issues.is_empty() {
        let problems: Vec<String> = issues.iter().map(buyer_problem).collect();
        let mut vars = vars;
        vars.insert("problems", problems.join("；"));
        log::write(
            log::Level::Info,
            &format!("order {} needs {} fix(es)", order.id, issues.len()),
        );
        return Ok(Confirmation {
            verdict: ConfirmationVerdict::NeedsFix(issues),
            message: fill(&cfg.fix_message, &vars),
            remark,
            merge_with,
        });
    }

    let a = &order.address;
    let items: Vec<String> = order
        .items
        .iter()
        .map(|i| {
            let spec = if i.spec.is_empty() {
                String::new()
            } else {
                format!("（{}）", i.spec)
            };
            format!(
                "{}{} x{}，¥{}",
                i.title,
                spec,
                i.quantity,
                yuan(i.unit_price * u64::from(i.quantity))
            )
        })
        .collect();
    let mut vars = vars;
    vars.insert("items", items.join("\n"));
    vars.insert("recipient", a.recipient.clone());
    vars.insert("phone", a.phone.clone());
    vars.insert(
        "address",
        format!("{}{}{}{}", a.province, a.city, a.district, a.detail),
    );
    vars.insert("count", merge_with.len().to_string());
    let mut message = fill(&cfg.confirm_message, &vars);
    if !merge_with.is_empty() {
        message.push('\n');
        message.push_str(&fill(&cfg.merge_note, &vars));
    }
    Ok(Confirmation {
        verdict: ConfirmationVerdict::Ok,
        message,
        remark,
        merge_with,
    })
}

/// Unpaid: hold, and remind once after the configured delay (催付). The
/// plugin's state remembers which orders were reminded.
fn unpaid(cfg: &Config, order: &Order, now: i64, vars: &BTreeMap<&str, String>) -> Confirmation {
    let due = order
        .created_at
        .saturating_add(i64::from(cfg.unpaid_remind_after_hours) * SECS_PER_HOUR);
    let key = format!("reminded/{}", order.id);
    let (reason, message) = if now < due {
        (format!("unpaid: reminder due at {due}"), String::new())
    } else if state::get(&key).is_some() {
        ("unpaid: already reminded once".to_string(), String::new())
    } else {
        if let Err(e) = state::set(&key, &now.to_string()) {
            log::write(
                log::Level::Warn,
                &format!("cannot record reminder for {}: {e:?}", order.id),
            );
        }
        (
            "unpaid: payment reminder sent".to_string(),
            fill(&cfg.unpaid_message, vars),
        )
    };
    Confirmation {
        verdict: ConfirmationVerdict::Hold(reason),
        message,
        remark: None,
        merge_with: Vec::new(),
    }
}

fn check_items(order: &Order, issues: &mut Vec<OrderIssue>) {
    if order.items.is_empty() {
        issues.push(OrderIssue {
            kind: IssueKind::InvalidItems,
            field: "order.items".into(),
            detail: "the order has no items".into(),
        });
    }
    for (i, item) in order.items.iter().enumerate() {
        if item.quantity == 0 {
            issues.push(OrderIssue {
                kind: IssueKind::InvalidItems,
                field: format!("order.items[{i}].quantity"),
                detail: format!("item {} has quantity 0", item.sku),
            });
        }
    }
}

fn check_address(a: &Address, min_detail: usize, issues: &mut Vec<OrderIssue>) {
    if a.recipient.trim().is_empty() {
        issues.push(OrderIssue {
            kind: IssueKind::MissingRecipient,
            field: "order.address.recipient".into(),
            detail: "no recipient name".into(),
        });
    }
    if !valid_mobile(&a.phone) {
        issues.push(OrderIssue {
            kind: IssueKind::InvalidPhone,
            field: "order.address.phone".into(),
            detail: format!(
                "`{}` is not a mainland mobile number (11 digits starting with 1)",
                mask(&a.phone)
            ),
        });
    }
    let mut missing = Vec::new();
    for (name, value) in [
        ("province", &a.province),
        ("city", &a.city),
        ("district", &a.district),
    ] {
        if value.trim().is_empty() {
            missing.push(name);
        }
    }
    if a.detail.trim().chars().count() < min_detail {
        missing.push("detail");
    }
    if !missing.is_empty() {
        issues.push(OrderIssue {
            kind: IssueKind::IncompleteAddress,
            field: format!("order.address.{}", missing[0]),
            detail: format!("address is missing: {}", missing.join(", ")),
        });
    }
}

/// A mainland mobile number: 11 digits, starting with 1 then 3-9, after
/// removing spaces, dashes and a +86/86 prefix.
fn valid_mobile(phone: &str) -> bool {
    let digits: String = phone.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = digits
        .strip_prefix("+86")
        .or_else(|| digits.strip_prefix("86").filter(|d| d.len() == 11))
        .unwrap_or(&digits);
    let b = digits.as_bytes();
    b.len() == 11
        && b.iter().all(u8::is_ascii_digit)
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
}

/// Keep only the first 3 and last 2 characters of a phone number for logs.
fn mask(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() <= 5 {
        return "*".repeat(chars.len());
    }
    let mut out: String = chars[..3].iter().collect();
    out.push_str(&"*".repeat(chars.len() - 5));
    out.extend(&chars[chars.len() - 2..]);
    out
}

fn same_address(a: &Address, b: &Address) -> bool {
    a.recipient.trim() == b.recipient.trim()
        && a.phone.trim() == b.phone.trim()
        && a.province.trim() == b.province.trim()
        && a.city.trim() == b.city.trim()
        && a.district.trim() == b.district.trim()
        && a.detail.trim() == b.detail.trim()
}

fn parse_flag(name: &str) -> FlagColor {
    match name {
        "yellow" => FlagColor::Yellow,
        "green" => FlagColor::Green,
        "blue" => FlagColor::Blue,
        "purple" => FlagColor::Purple,
        _ => FlagColor::Red,
    }
}

/// How to say an issue to the buyer.
fn buyer_problem(issue: &OrderIssue) -> String {
    match issue.kind {
        IssueKind::InvalidPhone => "收货电话好像不正确（需要11位手机号）".into(),
        IssueKind::IncompleteAddress => "收货地址不完整（需要省、市、区和详细地址）".into(),
        IssueKind::MissingRecipient => "缺少收货人姓名".into(),
        IssueKind::InvalidItems => "订单商品数量有误".into(),
        IssueKind::TwinAccount => "您有多个相似的账号，请确认是哪个账号下的订单".into(),
        IssueKind::Other => issue.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_numbers() {
        assert!(valid_mobile("13812345678"));
        assert!(valid_mobile("+86 138-1234-5678"));
        assert!(valid_mobile("8613812345678"));
        assert!(!valid_mobile("1381234567"));
        assert!(!valid_mobile("23812345678"));
        assert!(!valid_mobile("12812345678"));
        assert!(!valid_mobile("0571-88888888"));
        assert_eq!(mask("13812345678"), "138******78");
    }
}
