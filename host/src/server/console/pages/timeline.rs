//! `GET /console/shops/{shop}/timeline?customer=|order=`: what happened
//! to one buyer or one order, oldest first — the workflow's events, the
//! decisions they made, timers and actions, the revisits — and the step
//! calls about it that came straight through the API.

use crate::app::{App, TimelineEntry};
use crate::server::console::PageQuery;
use crate::server::console::error::ConsoleError;
use crate::server::console::page;
use crate::server::console::session::ShopView;
use crate::storage::DecisionQuery;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// Most step calls shown besides the workflow's.
const DECISIONS: usize = 200;

#[derive(Deserialize)]
pub struct Subject {
    #[serde(default)]
    customer: String,
    #[serde(default)]
    order: String,
    format: Option<String>,
}

/// One line of the timeline: when, what kind, what (as shown, and as
/// plain text for CSV).
struct Line {
    at_ms: i64,
    kind: &'static str,
    text: Markup,
}

impl Line {
    /// The line's text without its markup.
    fn plain(&self) -> String {
        let html = self.text.0.as_str();
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
    }
}

pub async fn show(
    State(app): State<Arc<App>>,
    view: ShopView,
    PageQuery(q): PageQuery<Subject>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let customer = q.customer.trim().to_string();
    let order = q.order.trim().to_string();
    let base = format!("/console/shops/{}", shop.id);
    let subject = match (customer.is_empty(), order.is_empty()) {
        (false, _) => Some(format!("customer:{customer}")),
        (true, false) => Some(format!("order:{order}")),
        (true, true) => None,
    };
    let mut lines: Vec<Line> = Vec::new();
    if let Some(subject) = &subject {
        let timeline = app
            .timeline(&shop.id, subject)
            .map_err(|e| ConsoleError::api(lang, e))?;
        let mut seen = std::collections::HashSet::new();
        for entry in timeline.entries {
            lines.push(match entry {
                TimelineEntry::Event(e) => Line {
                    at_ms: e.received_ms,
                    kind: t.event,
                    text: html! { code { (e.kind) } " " span.muted { (e.id) } " · " (format!("{:?}", e.status).to_lowercase()) },
                },
                TimelineEntry::Decision { id, step, version, at_ms, ok, .. } => {
                    seen.insert(id);
                    Line {
                        at_ms,
                        kind: t.decision,
                        text: html! {
                            a href={ (base) "/decisions/" (at_ms) "-" (id) } { "#" (id) }
                            " " (step) " v" (version) " "
                            @if ok { span.tag.ok { (t.ok) } } @else { span.tag.bad { (t.error) } }
                        },
                    }
                }
                TimelineEntry::Action(a) => Line {
                    at_ms: a.at_ms,
                    kind: t.action,
                    text: html! { code { (a.kind) } " " (format!("{:?}", a.status).to_lowercase()) },
                },
                TimelineEntry::Timer { name, due_at, pending, .. } => Line {
                    at_ms: due_at * 1000,
                    kind: t.timer,
                    text: html! { code { (name) } " " @if pending { span.tag.warn { (t.pending) } } @else { span.tag { (t.fired) } } },
                },
                TimelineEntry::Revisit(r) => Line {
                    at_ms: r.due_at * 1000,
                    kind: t.revisit,
                    text: html! { (r.purpose) " · " code { (r.status.as_str()) } " · " (r.message) },
                },
            });
        }
        let query = DecisionQuery {
            shop: shop.id.clone(),
            customer: (!customer.is_empty()).then(|| customer.clone()),
            order: (customer.is_empty() && !order.is_empty()).then(|| order.clone()),
            limit: DECISIONS,
            ..DecisionQuery::default()
        };
        for d in app
            .decisions(&query)
            .map_err(|e| ConsoleError::api(lang, e))?
        {
            if seen.contains(&d.id) {
                continue;
            }
            lines.push(Line {
                at_ms: d.at_ms,
                kind: t.decision,
                text: html! {
                    a href={ (base) "/decisions/" (d.at_ms) "-" (d.id) } { "#" (d.id) }
                    " " (lang.step(d.step)) " v" (d.version) " "
                    @match &d.error { None => span.tag.ok { (t.ok) }, Some(e) => span.tag.bad { (e.code) } }
                },
            });
        }
        lines.sort_by_key(|l| l.at_ms);
    }
    if q.format.as_deref() == Some("csv") {
        let rows = lines
            .iter()
            .map(|l| vec![page::time_ms(l.at_ms), l.kind.to_string(), l.plain()])
            .collect();
        return Ok(page::csv("timeline.csv", &["at", "kind", "what"], rows));
    }
    let here = format!(
        "{base}/timeline?customer={}&order={}",
        page::query_escape(&customer),
        page::query_escape(&order)
    );
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "timeline"))
        p.muted { (t.timeline_intro) }
        form.search method="get" action={ (base) "/timeline" } {
            label { (t.customer) input type="text" name="customer" value=(customer); }
            label { (t.order) input type="text" name="order" value=(order); }
            button type="submit" { (t.search_button) }
        }
        @if subject.is_some() {
            @if lines.is_empty() {
                p.muted { (t.nothing_yet) }
            } @else {
                p { a href={ (here) "&format=csv" } { (t.export_csv) } }
                div.scroll { table {
                    thead { tr { th { (t.when) } th { "" } th { "" } } }
                    tbody { @for l in &lines {
                        tr { td { (page::time_ms(l.at_ms)) } td { span.tag { (l.kind) } } td { (l.text) } }
                    } }
                } }
            }
        }
    };
    Ok(page::page(&signed, &here, t.timeline, body).into_response())
}
