//! `GET /v1/shops/{shop}/refunds`: the shop's refund decisions, newest first.

use super::{Page, limit, query, shop_for};
use crate::server::App;
use crate::server::error::ApiError;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use std::sync::Arc;

pub async fn list(
    State(app): State<Arc<App>>,
    Path(shop_id): Path<String>,
    headers: HeaderMap,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let limit = limit(query(page)?.limit)?;
    let refunds = app.storage.refunds(&shop.id, limit)?;
    Ok(Json(
        serde_json::json!({ "shop": shop.id, "refunds": refunds }),
    ))
}
