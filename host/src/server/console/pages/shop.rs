//! `GET /console/shops/{shop}`: one shop's steps, what serves each, and
//! the way to each step's versions.

use super::overview::serving;
use crate::app::{App, KeyOwner};
use crate::server::console::PageQuery;
use crate::server::console::error::ConsoleError;
use crate::server::console::page;
use crate::server::console::session::ShopView;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Format {
    format: Option<String>,
}

pub async fn show(
    State(app): State<Arc<App>>,
    view: ShopView,
    PageQuery(q): PageQuery<Format>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let overview = app.overview(&KeyOwner::Shop(shop.id.clone()), "", 1);
    if q.format.as_deref() == Some("csv") {
        return Ok(super::overview::csv(&overview.shops));
    }
    let summary = overview.shops.into_iter().next();
    let here = format!("/console/shops/{}", shop.id);
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "steps"))
        @if let Some(summary) = summary {
            @if let Some(reason) = &summary.degraded {
                div.card.error { (t.degraded) ": " code { (reason) } }
            }
            @for (step, reason) in &summary.failures {
                div.card.error {
                    (t.load_failures) @if let Some(step) = step { " · " (lang.step(*step)) } ": "
                    code { (reason) }
                }
            }
            p { a href={ (here) "?format=csv" } { (t.export_csv) } }
            div.scroll { table {
                thead { tr {
                    th { (t.step) } th { (t.serving) } th.num { (t.calls_hour) } th.num { (t.errors_hour) } th { (t.versions) }
                } }
                tbody { @for s in &summary.steps {
                    tr {
                        td { strong { (lang.step(s.step)) } br; code.muted { (s.step.world()) } }
                        td { (serving(lang, s)) }
                        td.num { (s.calls_hour) }
                        td.num { (s.errors_hour) }
                        td { a href={ "/console/shops/" (shop.id) "/steps/" (s.step.world()) } { (t.versions) " →" } }
                    }
                } }
            } }
        }
    };
    Ok(page::page(&signed, &here, &shop.name, body).into_response())
}
