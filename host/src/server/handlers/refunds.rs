//! `GET /v1/shops/{shop}/refunds`: the shop's refund decisions, newest first.

use super::{Page, limit};
use crate::app::App;
use crate::app::RefundView;
use crate::server::error::ApiError;
use crate::server::extract::{AppQuery, ShopAccess};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct Refunds {
    shop: String,
    refunds: Vec<RefundView>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppQuery(page): AppQuery<Page>,
) -> Result<Json<Refunds>, ApiError> {
    let refunds = app.refunds(&shop.id, limit(page.limit)?)?;
    Ok(Json(Refunds {
        shop: shop.id.clone(),
        refunds,
    }))
}
