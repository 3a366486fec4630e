//! Revisits (回访) of a shop:
//! - `GET  /v1/shops/{shop}/revisits?status=&limit=`: earliest due first
//! - `POST /v1/shops/{shop}/revisit-plans`: plan for many customers at once
//!   (e.g. a shop-wide date for a customer list), `{"requests": [...]}`
//! - `POST /v1/shops/{shop}/revisits/{id}/outcome`: an attempt's outcome
//! - `POST /v1/shops/{shop}/revisits/{id}/cancel`
//! - `GET  /v1/shops/{shop}/revisits/report?period=week|month&at=` or
//!   `?from=&to=` (unix seconds): the 回访总结报告

use super::limit;
use crate::app::RevisitView;
use crate::app::{App, OutcomeInput, PlansReport, Report};
use crate::server::error::{ApiError, step_code};
use crate::server::extract::{
    AppJson, AppPath, AppQuery, BulkPlan, ShopAccess, ShopCaller, ShopKey,
};
use crate::storage::RevisitStatus;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Revisits {
    shop: String,
    revisits: Vec<RevisitView>,
}

/// One revisit, after an outcome or a cancel.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OneRevisit {
    revisit: RevisitView,
}

pub async fn list(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Revisits>, ApiError> {
    let status = q
        .status
        .as_deref()
        .map(|s| {
            s.parse::<RevisitStatus>()
                .map_err(|e| ApiError::InvalidQuery(format!("status {e}")))
        })
        .transpose()?;
    let revisits = app.revisits(&shop.id, status, limit(q.limit)?)?;
    Ok(Json(Revisits {
        shop: shop.id.clone(),
        revisits,
    }))
}

pub async fn outcome(
    State(app): State<Arc<App>>,
    ShopCaller(shop, actor): ShopCaller,
    AppPath((_, id)): AppPath<(String, u64)>,
    AppJson(input, _): AppJson<OutcomeInput>,
) -> Result<Json<OneRevisit>, ApiError> {
    let revisit = app.record_outcome(&shop.id, id, input, actor).await?;
    Ok(Json(OneRevisit { revisit }))
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, id)): AppPath<(String, u64)>,
) -> Result<Json<OneRevisit>, ApiError> {
    let revisit = app.cancel_revisit(&shop.id, id).await?;
    Ok(Json(OneRevisit { revisit }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    period: Option<String>,
    at: Option<i64>,
    from: Option<i64>,
    to: Option<i64>,
}

pub async fn report(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppQuery(q): AppQuery<ReportQuery>,
) -> Result<Json<Report>, ApiError> {
    let (from, to) = match (q.from, q.to, q.period.as_deref()) {
        (Some(from), Some(to), None) if from < to => (from, to),
        (None, None, Some(period)) => {
            let days = match period {
                "week" => 7,
                "month" => 30,
                other => {
                    return Err(ApiError::InvalidQuery(format!(
                        "period `{other}` is not week or month"
                    )));
                }
            };
            let at = q.at.unwrap_or_else(|| chrono::Utc::now().timestamp());
            (at - days * 86_400, at)
        }
        _ => {
            return Err(ApiError::InvalidQuery(
                "give period=week|month (and at=), or from= and to= with from < to".into(),
            ));
        }
    };
    Ok(Json(app.revisit_report(&shop.id, from, to)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansBody {
    requests: Vec<Box<RawValue>>,
}

/// Plan revisits for many customers in one call; answers when all are
/// durable, with each request's decision id or error, in order.
pub async fn plans(
    State(app): State<Arc<App>>,
    ShopKey(shop): ShopKey,
    AppJson(body, _): AppJson<PlansBody, BulkPlan>,
) -> Result<Json<PlansReport>, ApiError> {
    let describe = |e: &crate::app::StepError| serde_json::json!({ "code": step_code(e), "message": e.to_string() });
    Ok(Json(
        app.plan_revisits(shop, body.requests, describe).await?,
    ))
}
