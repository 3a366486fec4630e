//! `GET /console/shops/{shop}/kpis?period=week|month`: the numbers a shop
//! cares about that kefu knows — refunds (how many, how decided, the
//! share escalated, the money, the time to decide), revisit success,
//! satisfaction, complaint follow-ups — as figures and charts;
//! `?format=csv` exports the days.

use super::revisits::period;
use crate::app::{App, MAX_REFUNDS, REFUND_OUTCOMES};
use crate::server::console::charts::{self, Point};
use crate::server::console::error::ConsoleError;
use crate::server::console::page::{self, percent, yuan};
use crate::server::console::session::ShopView;
use crate::server::console::text::Lang;
use crate::server::console::{PageQuery, blocking};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct View {
    period: Option<String>,
    format: Option<String>,
}

fn outcome_name(lang: Lang, name: &str) -> &'static str {
    let t = lang.texts();
    match name {
        "approve" => t.outcome_approve,
        "reject" => t.outcome_reject,
        "escalate" => t.outcome_escalate,
        "request-evidence" => t.outcome_request_evidence,
        _ => t.outcome_explain,
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
    let (from, to, period_name) = period(lang, q.period.as_deref())?;
    let kpis = {
        let app = app.clone();
        let id = shop.id.clone();
        blocking(lang, move || app.kpis(&id, from, to, true)).await?
    };
    let day = |start: i64| page::time_s(start)[..10].to_string();
    if q.format.as_deref() == Some("csv") {
        let rows = kpis
            .days
            .iter()
            .map(|d| {
                vec![
                    day(d.start),
                    d.orders.to_string(),
                    d.refunds.to_string(),
                    d.escalated.to_string(),
                    d.closed.to_string(),
                    d.reached.to_string(),
                ]
            })
            .collect();
        return Ok(page::csv(
            "kpis.csv",
            &[
                "day",
                "orders_confirmed",
                "refund_requests",
                "escalated",
                "revisits_closed",
                "revisits_reached",
            ],
            rows,
        ));
    }
    let refunds_by_day: Vec<Point> = kpis
        .days
        .iter()
        .map(|d| Point {
            label: day(d.start)[5..].to_string(),
            value: d.refunds as f64,
            shown: d.refunds.to_string(),
        })
        .collect();
    let outcomes: Vec<Point> = REFUND_OUTCOMES
        .iter()
        .zip(kpis.outcomes)
        .map(|(name, n)| Point {
            label: outcome_name(lang, name).to_string(),
            value: n as f64,
            shown: n.to_string(),
        })
        .collect();
    let ms = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.2} ms"));
    let complaints: usize = kpis.revisits.complaint_causes.values().sum();
    let base = format!("/console/shops/{}/kpis", shop.id);
    let here = format!("{base}?period={period_name}");
    let body = html! {
        (page::shop_tabs(lang, &shop.id, &shop.name, "kpis"))
        nav.tabs {
            a href={ (base) "?period=week" } class=[(period_name == "week").then_some("on")] { (t.week) }
            a href={ (base) "?period=month" } class=[(period_name == "month").then_some("on")] { (t.month) }
            a href={ (base) "?period=" (period_name) "&format=csv" } { (t.export_csv) }
        }
        @if kpis.refunds_capped {
            div.card.error { (t.capped_note) " " (MAX_REFUNDS) }
        }
        div.grid {
            div.stat { div.k { (t.orders_confirmed) } div.v { (kpis.orders) } }
            div.stat { div.k { (t.refunds) } div.v { (kpis.refunds) } }
            div.stat { div.k { (t.refund_rate) } div.v { (kpis.refund_rate.map_or("—".into(), percent)) } }
            div.stat { div.k { (t.escalated_share) } div.v { (kpis.escalated_share.map_or("—".into(), percent)) } }
            div.stat { div.k { (t.requested_money) } div.v { (yuan(kpis.requested_fen)) } }
            div.stat { div.k { (t.approved_money) } div.v { (yuan(kpis.approved_fen)) } }
            div.stat { div.k { (t.decision_time) } div.v style="font-size:1.1rem" { (ms(kpis.decision_ms_p50)) " / " (ms(kpis.decision_ms_p95)) } }
            div.stat { div.k { (t.success_rate) } div.v { (kpis.revisits.success_rate.map_or("—".into(), percent)) } }
            div.stat { div.k { (t.satisfaction_average) } div.v { (kpis.revisits.satisfaction_average.map_or("—".into(), |s| format!("{s:.2}"))) } }
            div.stat { div.k { (t.complaints) } div.v { (complaints) } }
        }
        (charts::columns(t.refunds_by_day, &refunds_by_day, None))
        (charts::bars(t.refund_outcomes, &outcomes))
    };
    Ok(page::page(&signed, &here, t.kpis, body).into_response())
}
