//! `GET /console/shops/{shop}/decisions`: search the decision log by
//! customer, order, step, version and time (newest first, 50 a page,
//! `?format=csv` exports up to 1,000); `GET .../decisions/{at}-{id}`: one
//! decision with its input, output, version, duration and state reads.
//! A search by customer or order reads the log's index; by step or
//! version alone it looks at the newest entries only ([`SCAN_LIMIT`]).

use crate::app::{App, DecisionView};
use crate::server::console::error::ConsoleError;
use crate::server::console::page;
use crate::server::console::session::ShopView;
use crate::server::console::text::Lang;
use crate::server::console::{PageQuery, blocking};
use crate::steps::Step;
use crate::storage::DecisionQuery;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

const PAGE: usize = 50;
const CSV_ROWS: usize = 1_000;
/// Most entries a search by step or version alone looks at.
pub const SCAN_LIMIT: usize = 10_000;

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    customer: String,
    #[serde(default)]
    order: String,
    #[serde(default)]
    step: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    /// The page after this entry (its time, ms): older ones.
    before: Option<i64>,
    format: Option<String>,
}

impl Search {
    fn query(&self, lang: Lang, shop: &str, limit: usize) -> Result<DecisionQuery, ConsoleError> {
        let bad = |what: String| ConsoleError::BadForm(lang, what);
        let step = match self.step.trim() {
            "" => None,
            s => Some(Step::from_name_or_endpoint(s).ok_or_else(|| bad(format!("step `{s}`")))?),
        };
        let version = match self.version.trim().trim_start_matches('v') {
            "" => None,
            v => Some(v.parse().map_err(|_| bad(format!("version `{v}`")))?),
        };
        let time = |text: &str| match text.trim() {
            "" => Ok(None),
            t => page::parse_local(t)
                .map(Some)
                .ok_or_else(|| bad(format!("time `{t}`"))),
        };
        let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
        let until = time(&self.until)?;
        let until = match (until, self.before) {
            (Some(u), Some(b)) => Some(u.min(b)),
            (u, b) => u.or(b),
        };
        let customer = text(&self.customer);
        let order = text(&self.order);
        let indexed = customer.is_some() || order.is_some();
        Ok(DecisionQuery {
            shop: shop.to_string(),
            step,
            since_ms: time(&self.since)?,
            until_ms: until,
            customer,
            order,
            version,
            limit,
            scan_limit: (!indexed && (step.is_some() || version.is_some())).then_some(SCAN_LIMIT),
        })
    }

    /// This search as a query string (without the page), for links.
    fn link(&self) -> String {
        let e = page::query_escape;
        format!(
            "customer={}&order={}&step={}&version={}&since={}&until={}",
            e(&self.customer),
            e(&self.order),
            e(&self.step),
            e(&self.version),
            e(&self.since),
            e(&self.until)
        )
    }
}

/// A decision's outcome, short: `ok`, or its error code.
fn result(lang: Lang, d: &DecisionView) -> Markup {
    let t = lang.texts();
    html! {
        @match &d.error {
            None => span.tag.ok { (t.ok) },
            Some(e) => span.tag.bad title=(e.message) { (e.code) },
        }
        @if d.canary { " " span.tag.warn { (t.in_canary) } }
        @if d.fallback.is_some() { " " span.tag.warn { (t.fallback) } }
    }
}

pub async fn list(
    State(app): State<Arc<App>>,
    view: ShopView,
    PageQuery(search): PageQuery<Search>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let csv = search.format.as_deref() == Some("csv");
    let query = search.query(lang, &shop.id, if csv { CSV_ROWS } else { PAGE })?;
    let found = {
        let app = app.clone();
        blocking(lang, move || app.decisions(&query)).await?
    };
    if csv {
        let rows = found
            .iter()
            .map(|d| {
                vec![
                    d.id.to_string(),
                    page::time_ms(d.at_ms),
                    d.step.world().to_string(),
                    d.version.to_string(),
                    d.customer.clone().unwrap_or_default(),
                    d.order.clone().unwrap_or_default(),
                    d.error.as_ref().map_or("ok".into(), |e| e.code.clone()),
                    d.duration_us.to_string(),
                    d.canary.to_string(),
                ]
            })
            .collect();
        return Ok(page::csv(
            "decisions.csv",
            &[
                "id",
                "at",
                "step",
                "version",
                "customer",
                "order",
                "result",
                "duration_us",
                "canary",
            ],
            rows,
        ));
    }
    let base = format!("/console/shops/{}/decisions", shop.id);
    let here = format!("{base}?{}", search.link());
    let older = (found.len() == PAGE)
        .then(|| found.last().map(|d| format!("{here}&before={}", d.at_ms)))
        .flatten();
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "decisions"))
        form.search method="get" action=(base) {
            label { (t.customer) input type="text" name="customer" value=(search.customer); }
            label { (t.order) input type="text" name="order" value=(search.order); }
            label { (t.step)
                select name="step" {
                    option value="" { (t.all_steps) }
                    @for step in Step::ALL {
                        option value=(step.world()) selected[search.step == step.world()] { (lang.step(step)) }
                    }
                }
            }
            label { (t.version) input type="text" name="version" value=(search.version) size="4"; }
            label { (t.since) input type="datetime-local" name="since" value=(search.since); }
            label { (t.until) input type="datetime-local" name="until" value=(search.until); }
            button type="submit" { (t.search_button) }
            a href={ (base) "?" (search.link()) "&format=csv" } { (t.export_csv) }
        }
        p.muted { small { (t.scanned_note) } }
        @if found.is_empty() {
            p.muted { (t.no_decisions) }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { (t.at) } th { (t.step) } th.num { (t.version) } th { (t.customer) }
                    th.hide-narrow { (t.order) } th { (t.result) } th.num.hide-narrow { (t.duration) }
                } }
                tbody { @for d in &found {
                    tr {
                        td { a href={ (base) "/" (d.at_ms) "-" (d.id) } { (page::time_ms(d.at_ms)) } }
                        td { (lang.step(d.step)) }
                        td.num { "v" (d.version) }
                        td { @if let Some(c) = &d.customer { a href={ "/console/shops/" (shop.id) "/timeline?customer=" (page::query_escape(c)) } { (c) } } }
                        td.hide-narrow { @if let Some(o) = &d.order { a href={ "/console/shops/" (shop.id) "/timeline?order=" (page::query_escape(o)) } { (o) } } }
                        td { (result(lang, d)) }
                        td.num.hide-narrow { (format!("{:.2} ms", d.duration_us as f64 / 1000.0)) }
                    }
                } }
            } }
            @if let Some(older) = older { p { a href=(older) { (t.next_page) " →" } } }
        }
    };
    Ok(page::page(&signed, &here, t.decisions, body).into_response())
}

pub async fn show(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, key)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let (at, id) = key
        .rsplit_once('-')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.parse::<u64>().ok()?)))
        .ok_or(ConsoleError::NotFound(lang))?;
    let d = app
        .decision(&shop.id, at, id)
        .map_err(|e| ConsoleError::api(lang, e))?
        .ok_or(ConsoleError::NotFound(lang))?;
    let here = format!("/console/shops/{}/decisions/{key}", shop.id);
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "decisions"))
        h2 { (t.decision) " #" (d.id) " " (result(lang, &d)) }
        div.grid {
            div.stat { div.k { (t.at) } div.v style="font-size:1rem" { (page::time_ms(d.at_ms)) } }
            div.stat { div.k { (t.step) } div.v style="font-size:1rem" { (lang.step(d.step)) } }
            div.stat { div.k { (t.version) } div.v { "v" (d.version) } }
            div.stat { div.k { (t.duration) } div.v { (format!("{:.2} ms", d.duration_us as f64 / 1000.0)) } }
        }
        p {
            (t.digest) ": " code { (d.digest) }
            @if let Some(c) = &d.customer {
                br; (t.customer) ": " a href={ "/console/shops/" (shop.id) "/timeline?customer=" (page::query_escape(c)) } { (c) " · " (t.timeline_of) }
            }
            @if let Some(o) = &d.order {
                br; (t.order) ": " a href={ "/console/shops/" (shop.id) "/timeline?order=" (page::query_escape(o)) } { (o) }
            }
        }
        @if let Some(f) = &d.fallback {
            div.card { (t.fallback) ": v" (f.from_version) " " code { (f.code) } " " (f.message) }
        }
        @if let Some(e) = &d.error {
            div.card.error { (t.error) ": " code { (e.code) } " " (e.message) }
        }
        div.cols {
            div { h2 { (t.input) } pre { (page::pretty(d.input.get())) } }
            div { h2 { (t.output) } pre { (d.output.as_ref().map(|o| page::pretty(o.get())).unwrap_or_default()) } }
        }
        @if !d.state_reads.is_empty() {
            h2 { (t.state_reads) }
            pre { (serde_json::to_string_pretty(&d.state_reads).unwrap_or_default()) }
        }
        h2 { (t.log_lines) }
        @if d.logs.is_empty() {
            p.muted { (t.no_log_lines) }
        } @else {
            pre { @for line in &d.logs { (format!("{:?}", line.level).to_lowercase()) "  " (line.message) "\n" } }
        }
    };
    Ok(page::page(&signed, &here, t.decision, body).into_response())
}
