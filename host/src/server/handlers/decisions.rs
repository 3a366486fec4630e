//! `GET /v1/shops/{shop}/decisions?step=&since=&until=&limit=`: the
//! decision log of a shop, newest first; times are unix milliseconds.

use super::{limit, query, shop_for};
use crate::server::App;
use crate::server::error::ApiError;
use crate::step::Step;
use crate::storage::DecisionQuery;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    step: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    filter: Result<Query<Filter>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let filter = query(filter)?;
    let step = match filter.step.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<Step>()
                .or_else(|e| super::steps::step_of(s).ok_or(e))
                .map_err(|e| ApiError::InvalidQuery(e.to_string()))?,
        ),
    };
    let decisions = app.storage.decisions(&DecisionQuery {
        shop: shop.id.clone(),
        step,
        since_ms: filter.since,
        until_ms: filter.until,
        limit: limit(filter.limit)?,
    })?;
    Ok(Json(
        serde_json::json!({ "shop": shop.id, "decisions": decisions }),
    ))
}
