//! Revisits (回访) of a shop:
//! - `GET  /v1/shops/{shop}/revisits?status=&limit=`: earliest due first
//! - `POST /v1/shops/{shop}/revisit-plans`: plan for many customers at once
//!   (e.g. a shop-wide date for a customer list), `{"requests": [...]}`
//! - `POST /v1/shops/{shop}/revisits/{id}/outcome`: an attempt's outcome
//! - `POST /v1/shops/{shop}/revisits/{id}/cancel`
//! - `GET  /v1/shops/{shop}/revisits/report?period=week|month&at=` or
//!   `?from=&to=` (unix seconds): the 回访总结报告

use super::{limit, query, shop_for};
use crate::server::App;
use crate::server::error::ApiError;
use crate::server::revisits::{self as logic, RevisitError};
use crate::server::service::run_step_with;
use crate::step::{Step, StepInput};
use crate::storage::RevisitOutcome;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

/// Largest batch of one `revisit-plans` call.
pub const MAX_BATCH: usize = 20_000;

impl From<RevisitError> for ApiError {
    fn from(e: RevisitError) -> Self {
        match e {
            RevisitError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RevisitError::Closed { .. } | RevisitError::Invalid(_) => {
                ApiError::BadRequest(e.to_string())
            }
            RevisitError::Storage(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<usize>,
}

const STATUSES: [&str; 5] = ["planned", "due", "done", "unreachable", "cancelled"];

pub async fn list(
    State(app): State<Arc<App>>,
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let q = query(q)?;
    if let Some(status) = q.status.as_deref()
        && !STATUSES.contains(&status)
    {
        return Err(ApiError::InvalidQuery(format!(
            "status must be one of {}",
            STATUSES.join(", ")
        )));
    }
    let revisits = app
        .storage
        .revisits(&shop.id, q.status.as_deref(), limit(q.limit)?)?;
    Ok(Json(json!({ "shop": shop.id, "revisits": revisits })))
}

fn body_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(de).map_err(|e| ApiError::InvalidField {
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeBody {
    result: String,
    satisfaction: Option<u8>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    agent: String,
}

pub async fn outcome(
    State(app): State<Arc<App>>,
    Path((shop_id, id)): Path<(String, u64)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let b: OutcomeBody = body_json(body)?;
    let outcome = RevisitOutcome {
        at: chrono::Utc::now().timestamp(),
        result: b.result,
        satisfaction: b.satisfaction,
        note: b.note,
        agent: b.agent,
    };
    let revisit = logic::record_outcome(app.storage.as_ref(), &shop.id, id, outcome)?;
    app.committer.durable().await?;
    Ok(Json(json!({ "revisit": revisit })))
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    Path((shop_id, id)): Path<(String, u64)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let revisit = logic::cancel(app.storage.as_ref(), &shop.id, id)?;
    app.committer.durable().await?;
    Ok(Json(json!({ "revisit": revisit })))
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
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let q = query(q)?;
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
    Ok(Json(logic::report(
        app.storage.as_ref(),
        &shop.id,
        from,
        to,
    )?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlansBody {
    requests: Vec<serde_json::Value>,
}

/// Plan revisits for many customers in one call; answers when all are
/// durable, with each request's decision id or error, in order.
pub async fn plans(
    State(app): State<Arc<App>>,
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, false)?;
    let b: PlansBody = body_json(body)?;
    if b.requests.len() > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_BATCH} requests per batch"
        )));
    }
    let meter = app.meter.shop(&shop.id);
    let mut results = Vec::with_capacity(b.requests.len());
    let mut planned = 0usize;
    for (i, request) in b.requests.into_iter().enumerate() {
        let raw = serde_json::value::to_raw_value(&request)
            .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
        let input = Step::RevisitPlanner
            .parse_input(raw.get().as_bytes())
            .map_err(|e| ApiError::InvalidField {
                path: format!("requests[{i}].{}", e.path),
                message: e.message,
            })?;
        debug_assert!(matches!(input, StepInput::RevisitPlanner(_)));
        match run_step_with(&app, &shop, &meter, Step::RevisitPlanner, input, raw, false).await {
            Ok(answer) => {
                let body: serde_json::Value = serde_json::from_str(answer.body.get()).unwrap_or_default();
                planned += body["output"]["revisits"].as_array().map_or(0, Vec::len);
                results.push(json!({ "decision_id": body["decision_id"] }));
            }
            Err((e, decision_id)) => results.push(json!({ "decision_id": decision_id, "error": { "code": e.code(), "message": e.to_string() } })),
        }
    }
    app.committer.durable().await?;
    Ok(Json(
        json!({ "shop": shop.id, "planned": planned, "results": results }),
    ))
}
