//! `GET /console/audit`: deploys, rollbacks, canary and shadow changes,
//! console sign-ins — of every shop for the admin, of its own shop for a
//! shop key. `?format=csv` exports.

use crate::app::{App, AuditView, KeyOwner};
use crate::server::console::PageQuery;
use crate::server::console::error::ConsoleError;
use crate::server::console::page;
use crate::server::console::session::Signed;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

const PAGE: usize = 200;

#[derive(Deserialize)]
pub struct Filter {
    format: Option<String>,
}

pub async fn show(
    State(app): State<Arc<App>>,
    signed: Signed,
    PageQuery(filter): PageQuery<Filter>,
) -> Result<Response, ConsoleError> {
    let lang = signed.lang;
    let t = lang.texts();
    let shop = match &signed.session.owner {
        KeyOwner::Admin => None,
        KeyOwner::Shop(id) => Some(id.as_str()),
    };
    let events: Vec<AuditView> = app
        .audit(shop, PAGE)
        .map_err(|e| ConsoleError::api(lang, e))?;
    if filter.format.as_deref() == Some("csv") {
        let rows = events
            .iter()
            .map(|e| {
                vec![
                    page::time_ms(e.at_ms),
                    e.shop.clone(),
                    e.step.map(|s| s.world().to_string()).unwrap_or_default(),
                    e.action.to_string(),
                    e.version.map(|v| v.to_string()).unwrap_or_default(),
                    e.actor.to_string(),
                    e.reason.clone(),
                ]
            })
            .collect();
        return Ok(page::csv(
            "audit.csv",
            &["at", "shop", "step", "action", "version", "actor", "detail"],
            rows,
        ));
    }
    let body = html! {
        h1 { (t.audit) }
        p { a href="/console/audit?format=csv" { (t.export_csv) } }
        @if events.is_empty() {
            p.muted { (t.no_audit) }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { (t.when) } th { (t.shop) } th { (t.step) } th { (t.action) }
                    th.num { (t.version) } th { (t.actor) } th.hide-narrow { (t.reason) }
                } }
                tbody { @for e in &events {
                    tr {
                        td { (page::time_ms(e.at_ms)) }
                        td { @if !e.shop.is_empty() { a href={ "/console/shops/" (e.shop) } { (e.shop) } } }
                        td { @if let Some(step) = e.step { (lang.step(step)) } }
                        td { span.tag { (e.action.as_str()) } }
                        td.num { @if let Some(v) = e.version { "v" (v) } }
                        td { code { (e.actor.as_str()) } }
                        td.hide-narrow { (e.reason) }
                    }
                } }
            } }
        }
    };
    Ok(page::page(&signed, "/console/audit", t.audit, body).into_response())
}
