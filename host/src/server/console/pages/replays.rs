//! What a new rule would decide, in the console: start a replay of a
//! recorded version over a step's logged decisions (admin), follow it
//! (`.../replays/{id}`, refreshing itself while it runs), read its report
//! — or a running shadow's — and one changed decision side by side
//! (`.../replays/{id}/examples/{decision}`, `.../shadow/examples/{decision}`).

use crate::app::{App, KeyOwner, ReplayExample, ReplayFilters, ReplayReport, ReplaySource};
use crate::server::console::error::ConsoleError;
use crate::server::console::page::{self, yuan};
use crate::server::console::session::{ShopView, check_csrf};
use crate::server::console::text::Lang;
use crate::server::console::{PageForm, PageQuery, blocking, step_of};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// A replay's or a shadow's report: counts, flips and fields (each with
/// links to its examples), the money, the time.
pub fn report(lang: Lang, r: &ReplayReport, examples: &str) -> Markup {
    let t = lang.texts();
    html! {
        div.grid {
            div.stat { div.k { (t.replayed) } div.v { (r.replayed) } }
            div.stat { div.k { (t.unchanged) } div.v { (r.unchanged) } }
            div.stat { div.k { (t.changed) } div.v { (r.changed) } }
            div.stat { div.k { (t.candidate_errors) } div.v { (r.candidate_errors.values().sum::<u64>()) } }
            @if r.refund_delta_fen != 0 {
                div.stat { div.k { (t.money_delta) } div.v {
                    (if r.refund_delta_fen < 0 { "−" } else { "+" }) (yuan(r.refund_delta_fen.unsigned_abs()))
                } }
            }
            div.stat { div.k { (t.call_time) } div.v style="font-size:1rem" {
                (r.original_time.p50_us) " → " (r.candidate_time.p50_us) " µs"
            } }
        }
        @for (title, groups) in [(t.flips, &r.flips), (t.changed_fields, &r.fields)] {
            @if !groups.is_empty() {
                h2 { (title) }
                div.scroll { table {
                    thead { tr { th { (t.change) } th.num { (t.count) } th { (t.examples) } } }
                    tbody { @for g in groups.iter() {
                        tr {
                            td { code { (g.change) } }
                            td.num { (g.count) }
                            td { @for id in &g.examples { a href={ (examples) "/" (id) } { "#" (id) } " " } }
                        }
                    } }
                } }
            }
        }
        @if !r.candidate_errors.is_empty() {
            h2 { (t.candidate_errors) }
            ul { @for (code, n) in &r.candidate_errors { li { code { (code) } ": " (n) } } }
        }
    }
}

#[derive(Deserialize)]
pub struct Start {
    csrf: String,
    version: u64,
    /// Replay the decisions of the last this many days.
    days: u32,
}

/// `POST .../replays`: replay recorded `version` over the last `days`.
pub async fn start(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step)): Path<(String, String)>,
    PageForm(form): PageForm<Start>,
) -> Result<Response, ConsoleError> {
    let lang = view.signed.lang;
    if view.signed.session.owner != KeyOwner::Admin {
        return Err(ConsoleError::Forbidden(lang));
    }
    check_csrf(&view.signed.session.csrf, &form.csrf)?;
    let step = step_of(lang, &step)?;
    if !(1..=90).contains(&form.days) {
        return Err(ConsoleError::BadForm(
            lang,
            format!("days `{}`: 1 to 90", form.days),
        ));
    }
    let since = chrono::Utc::now().timestamp_millis() - i64::from(form.days) * 86_400_000;
    let filters = ReplayFilters {
        since_ms: Some(since),
        until_ms: None,
        limit: None,
    };
    let shop = view.shop.id.clone();
    let actor = view.signed.session.owner.actor();
    let job = blocking(lang, move || {
        app.start_replay(
            &shop,
            step,
            ReplaySource::Version(form.version),
            filters,
            actor,
        )
    })
    .await?;
    let to = format!(
        "/console/shops/{}/steps/{}/replays/{}",
        page::query_escape(&view.shop.id),
        step.world(),
        job.id
    );
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response())
}

/// `GET .../replays/{id}`: progress, then the report.
#[derive(Deserialize)]
pub struct Format {
    format: Option<String>,
}

/// A report's groups as CSV: each flip and each changed field, with its
/// count and example decisions.
fn groups_csv(r: &ReplayReport) -> Response {
    let rows = [("flip", &r.flips), ("field", &r.fields)]
        .into_iter()
        .flat_map(|(kind, groups)| {
            groups.iter().map(move |g| {
                let examples: Vec<String> = g.examples.iter().map(u64::to_string).collect();
                vec![
                    kind.to_string(),
                    g.change.clone(),
                    g.count.to_string(),
                    examples.join(" "),
                ]
            })
        })
        .collect();
    page::csv("replay.csv", &["kind", "change", "count", "examples"], rows)
}

pub async fn show(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step, id)): Path<(String, String, u64)>,
    PageQuery(q): PageQuery<Format>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let step = step_of(lang, &step)?;
    let job = app
        .replay(&shop.id, step, id)
        .ok_or(ConsoleError::NotFound(lang))?;
    if q.format.as_deref() == Some("csv") {
        let report = job.report.as_ref().ok_or(ConsoleError::NotFound(lang))?;
        return Ok(groups_csv(report));
    }
    let base = format!("/console/shops/{}/steps/{}", shop.id, step.world());
    let here = format!("{base}/replays/{id}");
    let body = html! {
        @if job.status == "running" {
            // Reads without script: the page asks again in two seconds.
            meta http-equiv="refresh" content="2";
        }
        (page::shop_tabs(lang, &shop.id, &shop.name, "steps"))
        h2 { (t.replay) " #" (job.id) " · " (lang.step(step)) " · " code { (job.candidate) } }
        p {
            span.tag { (job.status) } " "
            (job.done) " / " (job.total) " · " (page::time_ms(job.started_at_ms))
            " · " a href=(base) { (t.back) }
        }
        @if let Some(error) = &job.error { div.card.error { code { (error) } } }
        @if let Some(r) = &job.report {
            p { a href={ (here) "?format=csv" } { (t.export_csv) } }
            (report(lang, r, &format!("{here}/examples")))
        }
    };
    Ok(page::page(&signed, &here, t.replay, body).into_response())
}

/// One decision side by side: its input, the logged answer, the
/// candidate's, and the fields that differ.
fn side_by_side(lang: Lang, e: &ReplayExample) -> Markup {
    let t = lang.texts();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    html! {
        p { (t.changed_fields) ": " @for f in &e.changed_fields { code { (f) } " " } }
        div.cols {
            div { h2 { (t.original) } pre { (pretty(&e.original)) } }
            div { h2 { (t.candidate) } pre { (pretty(&e.candidate)) } }
        }
        h2 { (t.input) }
        pre { (pretty(&e.input)) }
    }
}

/// `GET .../replays/{id}/examples/{decision}`.
pub async fn example(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step, id, decision)): Path<(String, String, u64, u64)>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let step = step_of(lang, &step)?;
    let e = app
        .replay_example(&shop.id, step, id, decision)
        .ok_or(ConsoleError::NotFound(lang))?;
    example_page(&signed, &shop, step, &format!("replays/{id}"), &e)
}

/// `GET .../shadow/examples/{decision}`.
pub async fn shadow_example(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, step, decision)): Path<(String, String, u64)>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let step = step_of(lang, &step)?;
    let e = app
        .shadow_example(&shop.id, step, decision)
        .map_err(|e| ConsoleError::api(lang, e))?
        .ok_or(ConsoleError::NotFound(lang))?;
    example_page(&signed, &shop, step, "shadow", &e)
}

fn example_page(
    signed: &crate::server::console::session::Signed,
    shop: &crate::app::Shop,
    step: crate::steps::Step,
    of: &str,
    e: &ReplayExample,
) -> Result<Response, ConsoleError> {
    let lang = signed.lang;
    let t = lang.texts();
    let base = format!("/console/shops/{}/steps/{}", shop.id, step.world());
    let here = format!("{base}/{of}/examples/{}", e.decision_id);
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "steps"))
        h2 { (t.decision) " #" (e.decision_id) " · " (lang.step(step)) }
        p { a href={ (base) @if of.starts_with("replays") { "/" (of) } } { (t.back) } }
        (side_by_side(lang, e))
    };
    Ok(page::page(signed, &here, t.decision, body).into_response())
}
