//! `GET /console/shops/{shop}/revisits`: the revisits due today and
//! overdue, each with a form to record its outcome (result, satisfaction
//! 1–5, note), and the week's or month's 回访总结 with charts;
//! `POST .../revisits/{id}/outcome` records an outcome (the API's call).
//! `?format=csv` exports the due list.

use crate::app::{App, OutcomeInput, RevisitView, day_start};
use crate::server::console::charts::{self, Point};
use crate::server::console::error::ConsoleError;
use crate::server::console::page::{self, percent};
use crate::server::console::session::{ShopView, check_csrf};
use crate::server::console::text::Lang;
use crate::server::console::{PageForm, PageQuery, blocking};
use crate::storage::{OutcomeResult, RevisitStatus};
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use std::sync::Arc;

/// Most due revisits listed.
const DUE: usize = 500;

#[derive(Deserialize)]
pub struct View {
    period: Option<String>,
    format: Option<String>,
    saved: Option<u64>,
}

/// A period's days and its bounds: `week` (7 days) or `month` (30), up to
/// the end of today.
pub fn period(lang: Lang, name: Option<&str>) -> Result<(i64, i64, &'static str), ConsoleError> {
    let now = chrono::Utc::now().timestamp();
    let end = day_start(now) + 86_400;
    match name.unwrap_or("week") {
        "week" => Ok((end - 7 * 86_400, end, "week")),
        "month" => Ok((end - 30 * 86_400, end, "month")),
        other => Err(ConsoleError::BadForm(
            lang,
            format!("period `{other}`: week or month"),
        )),
    }
}

fn result_name(lang: Lang, r: OutcomeResult) -> &'static str {
    let t = lang.texts();
    match r {
        OutcomeResult::Reached => t.result_reached,
        OutcomeResult::NoAnswer => t.result_no_answer,
        OutcomeResult::Refused => t.result_refused,
        OutcomeResult::WrongNumber => t.result_wrong_number,
    }
}

fn outcome_form(lang: Lang, base: &str, csrf: &str, r: &RevisitView) -> Markup {
    let t = lang.texts();
    html! {
        details.outcome {
            summary { (t.record_outcome) }
            form method="post" action={ (base) "/revisits/" (r.id) "/outcome" } {
                input type="hidden" name="csrf" value=(csrf);
                label { (t.result) " "
                    select name="result" {
                        @for res in OutcomeResult::ALL { option value=(res.as_str()) { (result_name(lang, *res)) } }
                    }
                }
                label { (t.satisfaction) " "
                    select name="satisfaction" {
                        option value="" { "—" }
                        @for s in (1..=5).rev() { option value=(s) { (s) } }
                    }
                }
                label { (t.note) " " input type="text" name="note"; }
                label { (t.agent) " " input type="text" name="agent"; }
                button type="submit" { (t.save) }
            }
        }
    }
}

pub async fn show(
    State(app): State<Arc<App>>,
    view: ShopView,
    PageQuery(q): PageQuery<View>,
) -> Result<Response, ConsoleError> {
    let ShopView { signed, shop } = view;
    let lang = signed.lang;
    let t = lang.texts();
    let now = chrono::Utc::now().timestamp();
    let end_of_today = day_start(now) + 86_400;
    let (from, to, period_name) = period(lang, q.period.as_deref())?;
    let (due, kpis) = {
        let app = app.clone();
        let id = shop.id.clone();
        blocking(lang, move || {
            let mut due: Vec<RevisitView> = app.revisits(&id, Some(RevisitStatus::Due), DUE)?;
            due.extend(
                app.revisits(&id, Some(RevisitStatus::Planned), DUE)?
                    .into_iter()
                    .take_while(|r| r.due_at < end_of_today),
            );
            due.sort_by_key(|r| r.due_at);
            due.truncate(DUE);
            Ok::<_, crate::storage::StorageError>((due, app.kpis(&id, from, to, false)?))
        })
        .await?
    };
    if q.format.as_deref() == Some("csv") {
        let rows = due
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.customer_id.clone(),
                    page::time_s(r.due_at),
                    format!("{:?}", r.channel).to_lowercase(),
                    r.purpose.clone(),
                    r.message.clone(),
                    r.attempts_made.to_string(),
                    r.status.to_string(),
                ]
            })
            .collect();
        return Ok(page::csv(
            "revisits-due.csv",
            &[
                "id", "customer", "due", "channel", "purpose", "message", "attempts", "status",
            ],
            rows,
        ));
    }
    let report = &kpis.revisits;
    let base = format!("/console/shops/{}", shop.id);
    let csrf = signed.session.csrf.clone();
    let day_label = |start: i64| page::time_s(start)[5..10].to_string();
    let success: Vec<Point> = kpis
        .days
        .iter()
        .map(|d| {
            let rate = (d.closed > 0).then(|| d.reached as f64 / d.closed as f64);
            Point {
                label: day_label(d.start),
                value: rate.unwrap_or(0.0),
                shown: rate.map_or(t.no_data.to_string(), percent),
            }
        })
        .collect();
    let scores: Vec<Point> = report
        .satisfaction_distribution
        .iter()
        .rev()
        .map(|(score, n)| Point {
            label: format!("{score} ★"),
            value: *n as f64,
            shown: n.to_string(),
        })
        .collect();
    let causes: Vec<Point> = report
        .complaint_causes
        .iter()
        .map(|(cause, n)| Point {
            label: cause.clone(),
            value: *n as f64,
            shown: n.to_string(),
        })
        .collect();
    let saved = q.saved.map(|id| format!("{} #{id}", t.outcome_saved));
    let here = format!("{base}/revisits?period={period_name}");
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "revisits"))
        (page::notice(saved))
        h2 { (t.due_now) " " a href={ (base) "/revisits?format=csv" } { small { (t.export_csv) } } }
        @if due.is_empty() {
            p.muted { (t.no_due) }
        } @else {
            div.scroll { table {
                thead { tr {
                    th { (t.due_at) } th { (t.customer) } th { (t.channel) } th { (t.purpose) }
                    th.hide-narrow { (t.message) } th.num { (t.attempts) } th {}
                } }
                tbody { @for r in &due {
                    tr {
                        td {
                            (page::time_s(r.due_at))
                            @if r.due_at < day_start(now) { br; span.tag.bad { (t.overdue) } }
                        }
                        td { a href={ (base) "/timeline?customer=" (page::query_escape(&r.customer_id)) } { (r.customer_id) } }
                        td { (format!("{:?}", r.channel).to_lowercase()) }
                        td { (r.purpose) }
                        td.hide-narrow { (r.message) }
                        td.num { (r.attempts_made) " / " (r.max_attempts) }
                        td { (outcome_form(lang, &base, &csrf, r)) }
                    }
                } }
            } }
        }
        h2 { (t.report) }
        nav.tabs {
            a href={ (base) "/revisits?period=week" } class=[(period_name == "week").then_some("on")] { (t.week) }
            a href={ (base) "/revisits?period=month" } class=[(period_name == "month").then_some("on")] { (t.month) }
        }
        div.grid {
            div.stat { div.k { (t.planned) } div.v { (report.planned) } }
            div.stat { div.k { (t.done) } div.v { (report.done) } }
            div.stat { div.k { (t.unreachable) } div.v { (report.unreachable) } }
            div.stat { div.k { (t.cancelled) } div.v { (report.cancelled) } }
            div.stat { div.k { (t.open) } div.v { (report.open) } }
            div.stat { div.k { (t.success_rate) } div.v { (report.success_rate.map_or("—".into(), percent)) } }
            div.stat { div.k { (t.satisfaction_average) } div.v { (report.satisfaction_average.map_or("—".into(), |s| format!("{s:.2}"))) } }
        }
        (charts::columns(t.success_over_time, &success, Some(1.0)))
        div.cols {
            (charts::bars(t.satisfaction_distribution, &scores))
            @if causes.is_empty() {
                figure.chart { figcaption { (t.complaint_causes) } p.muted { (t.no_data) } }
            } @else {
                (charts::bars(t.complaint_causes, &causes))
            }
        }
    };
    Ok(page::page(&signed, &here, t.revisits, body).into_response())
}

#[derive(Deserialize)]
pub struct Outcome {
    csrf: String,
    result: String,
    #[serde(default)]
    satisfaction: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    agent: String,
}

/// `POST .../revisits/{id}/outcome`: record it, back to the list.
pub async fn outcome(
    State(app): State<Arc<App>>,
    view: ShopView,
    Path((_, id)): Path<(String, String)>,
    PageForm(form): PageForm<Outcome>,
) -> Result<Response, ConsoleError> {
    let lang = view.signed.lang;
    check_csrf(&view.signed.session.csrf, &form.csrf)?;
    let bad = |what: String| ConsoleError::BadForm(lang, what);
    let id: u64 = id.parse().map_err(|_| ConsoleError::NotFound(lang))?;
    let result: OutcomeResult = form.result.parse().map_err(bad)?;
    let satisfaction = match form.satisfaction.trim() {
        "" => None,
        s => Some(
            s.parse::<u8>()
                .ok()
                .filter(|s| (1..=5).contains(s))
                .ok_or_else(|| bad(format!("{} `{s}`: 1 to 5", lang.texts().satisfaction)))?,
        ),
    };
    let agent = match form.agent.trim() {
        "" => match &view.signed.session.owner {
            crate::app::KeyOwner::Admin => "console (admin)".to_string(),
            crate::app::KeyOwner::Shop(_) => "console".to_string(),
        },
        a => a.to_string(),
    };
    let input = OutcomeInput {
        result,
        satisfaction,
        note: form.note.trim().to_string(),
        agent,
    };
    let actor = view.signed.session.owner.actor();
    app.record_outcome(&view.shop.id, id, input, actor)
        .await
        .map_err(|e| ConsoleError::api(lang, e))?;
    Ok((
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!(
                "/console/shops/{}/revisits?saved={id}",
                page::query_escape(&view.shop.id)
            ),
        )],
    )
        .into_response())
}
