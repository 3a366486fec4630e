//! What happened to a customer or an order:
//! `GET /v1/shops/{shop}/customers/{id}/timeline` and
//! `GET /v1/shops/{shop}/orders/{id}/timeline`.

use crate::app::{App, Timeline};
use crate::server::error::ApiError;
use crate::server::extract::{AppPath, ShopAccess};
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

pub async fn customer(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, id)): AppPath<(String, String)>,
) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(app.timeline(&shop.id, &format!("customer:{id}"))?))
}

pub async fn order(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, id)): AppPath<(String, String)>,
) -> Result<Json<Timeline>, ApiError> {
    Ok(Json(app.timeline(&shop.id, &format!("order:{id}"))?))
}
