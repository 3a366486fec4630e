//! `POST|DELETE /v1/shops/{shop}/customers/{customer}/do-not-contact`:
//! a customer who asked not to be contacted: their open revisits are
//! cancelled and new ones are kept cancelled.

use super::shop_for;
use crate::server::App;
use crate::server::error::ApiError;
use crate::server::revisits::do_not_contact;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::json;
use std::sync::Arc;

pub async fn set(
    State(app): State<Arc<App>>,
    Path((shop_id, customer)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    let cancelled = do_not_contact(app.storage.as_ref(), &shop.id, &customer)?;
    app.committer.durable().await?;
    Ok(Json(
        json!({ "customer": customer, "do_not_contact": true, "cancelled_revisits": cancelled }),
    ))
}

pub async fn clear(
    State(app): State<Arc<App>>,
    Path((shop_id, customer)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (shop, _) = shop_for(&app, &headers, &shop_id, true)?;
    app.storage.set_do_not_contact(&shop.id, &customer, false)?;
    app.committer.durable().await?;
    Ok(Json(
        json!({ "customer": customer, "do_not_contact": false }),
    ))
}
