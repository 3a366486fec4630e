//! `GET /console`: every shop the key opens, each step's serving version,
//! canary or shadow, the last hour's calls and errors, and what failed to
//! load. `?q=` filters, `?format=csv` exports.

use crate::app::{App, ShopSummary, StepSummary};
use crate::server::console::PageQuery;
use crate::server::console::error::ConsoleError;
use crate::server::console::page::{self, percent};
use crate::server::console::session::Signed;
use crate::server::console::text::Lang;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// Most shops on one page (filter for the others).
const PAGE: usize = 200;

#[derive(Deserialize)]
pub struct Filter {
    #[serde(default)]
    q: String,
    format: Option<String>,
}

/// A step's serving version as shown: `v3`, `bundled`, or why it serves
/// nothing.
pub fn serving(lang: Lang, s: &StepSummary) -> Markup {
    let t = lang.texts();
    html! {
        @match (s.version, &s.unavailable) {
            (Some(0), _) => span.tag { (t.bundled) },
            (Some(v), _) => span.tag.ok { "v" (v) },
            (None, Some(reason)) => span.tag.bad title=(reason) { (t.unavailable) },
            (None, None) => span.tag.bad { (t.unavailable) },
        }
        @if let Some((v, share)) = s.canary {
            " " span.tag.warn { (t.canary) " v" (v) " · " (percent(share / 100.0)) }
        }
        @if s.shadow { " " span.tag.brand { (t.shadow) } }
        @if s.reuse { " " span.tag { (t.instances_reuse) } }
    }
}

/// Shops' steps as CSV, a row per step.
pub fn csv(shops: &[ShopSummary]) -> Response {
    let rows = shops
        .iter()
        .flat_map(|shop| {
            shop.steps.iter().map(|s| {
                vec![
                    shop.id.clone(),
                    shop.name.clone(),
                    s.step.world().to_string(),
                    s.version.map(|v| v.to_string()).unwrap_or_default(),
                    s.canary
                        .map(|(v, p)| format!("v{v} {p}%"))
                        .unwrap_or_default(),
                    s.shadow.to_string(),
                    s.calls_hour.to_string(),
                    s.errors_hour.to_string(),
                    s.unavailable.clone().unwrap_or_default(),
                ]
            })
        })
        .collect();
    page::csv(
        "shops.csv",
        &[
            "shop",
            "name",
            "step",
            "version",
            "canary",
            "shadow",
            "calls_last_hour",
            "errors_last_hour",
            "unavailable",
        ],
        rows,
    )
}

fn shop_rows(lang: Lang, shop: &ShopSummary) -> Markup {
    let t = lang.texts();
    let span = shop.steps.len().max(1);
    html! {
        @for (i, s) in shop.steps.iter().enumerate() {
            tr {
                @if i == 0 {
                    td rowspan=(span) {
                        a href={ "/console/shops/" (shop.id) } { strong { (shop.name) } }
                        br; code.muted { (shop.id) }
                        @if let Some(reason) = &shop.degraded {
                            br; span.tag.bad title=(reason) { (t.degraded) }
                        }
                        @for (step, reason) in &shop.failures {
                            br; span.tag.bad title=(reason) {
                                (t.load_failures) @if let Some(step) = step { " · " (lang.step(*step)) }
                            }
                        }
                    }
                }
                td { a href={ "/console/shops/" (shop.id) "/steps/" (s.step.world()) } { (lang.step(s.step)) } }
                td { (serving(lang, s)) }
                td.num { (s.calls_hour) }
                td.num { @if s.errors_hour > 0 { span.tag.bad { (s.errors_hour) } } @else { "0" } }
            }
        }
    }
}

pub async fn show(
    State(app): State<Arc<App>>,
    signed: Signed,
    PageQuery(filter): PageQuery<Filter>,
) -> Result<Response, ConsoleError> {
    let lang = signed.lang;
    let t = lang.texts();
    let owner = signed.session.owner.clone();
    let limit = if filter.format.as_deref() == Some("csv") {
        usize::MAX
    } else {
        PAGE
    };
    let overview = app.overview(&owner, &filter.q, limit);
    if filter.format.as_deref() == Some("csv") {
        return Ok(csv(&overview.shops));
    }
    let here = format!("/console?q={}", page::query_escape(&filter.q));
    let body = html! {
        h1 { (t.shops) }
        form.search method="get" action="/console" {
            input type="search" name="q" value=(filter.q) placeholder=(t.filter_placeholder) aria-label=(t.filter_placeholder);
            button type="submit" { (t.filter_button) }
            a href={ "/console?format=csv&q=" (page::query_escape(&filter.q)) } { (t.export_csv) }
        }
        @if overview.shops.is_empty() {
            p.muted { (t.no_shops) }
        } @else {
            p.muted { (t.showing) " " (overview.shops.len()) " " (t.of_total) " " (overview.matching) }
            div.scroll {
                table {
                    thead { tr {
                        th { (t.shop) } th { (t.step) } th { (t.serving) }
                        th.num { (t.calls_hour) } th.num { (t.errors_hour) }
                    } }
                    tbody { @for shop in &overview.shops { (shop_rows(lang, shop)) } }
                }
            }
        }
    };
    Ok(page::page(&signed, &here, t.shops, body).into_response())
}
