//! The frame every console page shares (header, navigation, language
//! switch, sign-out), and the small helpers the pages use: times in China
//! time, money in yuan, query strings, CSV answers.

use super::session::Signed;
use super::text::Lang;
use crate::app::KeyOwner;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

/// The stylesheet, served at `/console/style.css`.
pub const STYLE: &str = include_str!("style.css");

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        title { (title) " · " (lang.texts().product) }
        link rel="stylesheet" href="/console/style.css";
    }
}

/// A page without navigation: sign-in and errors.
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    let t = lang.texts();
    html! {
        (DOCTYPE)
        html lang=(lang.html()) {
            (head(lang, title))
            body.bare {
                header.top {
                    span.brand { (t.product) }
                    (switch(lang, "/console/sign-in"))
                }
                main { (body) }
            }
        }
    }
}

/// The language switch: a link to the other language, back to `here`.
fn switch(lang: Lang, here: &str) -> Markup {
    let other = match lang {
        Lang::Zh => Lang::En,
        Lang::En => Lang::Zh,
    };
    html! {
        a.lang href={ "/console/lang/" (other.code()) "?back=" (query_escape(here)) } lang=(other.html()) {
            (lang.texts().switch_language)
        }
    }
}

/// A page of a signed-in user: `here` is its path and query (for the
/// language switch to come back to).
pub fn page(signed: &Signed, here: &str, title: &str, body: Markup) -> Markup {
    let lang = signed.lang;
    let t = lang.texts();
    let who = match &signed.session.owner {
        KeyOwner::Admin => t.signed_in_admin.to_string(),
        KeyOwner::Shop(id) => format!("{} · {id}", t.signed_in_shop),
    };
    html! {
        (DOCTYPE)
        html lang=(lang.html()) {
            (head(lang, title))
            body {
                header.top {
                    a.brand href="/console" { (t.product) }
                    nav {
                        a href="/console" { (t.nav_overview) }
                        a href="/console/audit" { (t.nav_audit) }
                    }
                    span.spacer {}
                    span.who { (who) }
                    (switch(lang, here))
                    form.inline method="post" action="/console/sign-out" {
                        input type="hidden" name="csrf" value=(signed.session.csrf);
                        button.link type="submit" { (t.sign_out) }
                    }
                }
                main { (body) }
                footer { (t.time_zone) }
            }
        }
    }
}

/// The tabs of a shop's pages.
pub fn shop_tabs(lang: Lang, shop: &str, name: &str, active: &str) -> Markup {
    let t = lang.texts();
    let tabs = [
        ("steps", t.tab_steps, format!("/console/shops/{shop}")),
        (
            "decisions",
            t.tab_decisions,
            format!("/console/shops/{shop}/decisions"),
        ),
        (
            "timeline",
            t.tab_timeline,
            format!("/console/shops/{shop}/timeline"),
        ),
        (
            "revisits",
            t.tab_revisits,
            format!("/console/shops/{shop}/revisits"),
        ),
        ("kpis", t.tab_kpis, format!("/console/shops/{shop}/kpis")),
    ];
    html! {
        div.shophead {
            h1 { (name) }
            code.muted { (shop) }
        }
        nav.tabs {
            @for (key, label, href) in &tabs {
                a href=(href) class=[(*key == active).then_some("on")] { (label) }
            }
        }
    }
}

/// A notice at the top of a page (after an action).
pub fn notice(text: Option<String>) -> Markup {
    html! {
        @if let Some(text) = text {
            div.notice role="status" { (text) }
        }
    }
}

/// Unix milliseconds as China time, `2026-12-01 14:05:09`.
pub fn time_ms(ms: i64) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&china)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// Unix seconds as China time, to the minute.
pub fn time_s(s: i64) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    chrono::DateTime::from_timestamp(s, 0)
        .map(|t| t.with_timezone(&china).format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| s.to_string())
}

/// A date of a `datetime-local`/`date` field (China time) as unix ms.
pub fn parse_local(text: &str) -> Option<i64> {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M"))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        })
        .ok()?;
    Some(naive.and_local_timezone(china).single()?.timestamp_millis())
}

/// Fen as yuan, `¥1,234.50`.
pub fn yuan(fen: u64) -> String {
    let whole = (fen / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("¥{grouped}.{:02}", fen % 100)
}

/// A share as a percent, `12.5%`.
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

/// Escape a query-string value.
pub fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A JSON text pretty-printed for reading.
pub fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_string())
}

/// A table as CSV (UTF-8 with a byte-order mark, so spreadsheet programs
/// read the Chinese right), downloaded as `name`.
pub fn csv(name: &str, header: &[&str], rows: Vec<Vec<String>>) -> Response {
    let mut out = String::from("\u{feff}");
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    out.push_str(
        &header
            .iter()
            .map(|h| field(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    out.push_str("\r\n");
    for row in rows {
        out.push_str(&row.iter().map(|c| field(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(yuan(123_456_789), "¥1,234,567.89");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(query_escape("/console?a=b c"), "/console%3Fa%3Db%20c");
        assert_eq!(time_ms(1_764_518_400_000), "2025-12-01 00:00:00");
        assert_eq!(parse_local("2025-12-01T00:00"), Some(1_764_518_400_000));
        assert_eq!(parse_local("2025-12-01"), Some(1_764_518_400_000));
        assert_eq!(parse_local("tomorrow"), None);
    }
}
