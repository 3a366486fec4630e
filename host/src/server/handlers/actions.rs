//! The flow's actions for integrations that poll:
//! `GET /v1/shops/{shop}/actions?status=&after=&limit=` and
//! `POST .../actions/{id}/ack`.

use super::limit;
use crate::app::{ActionView, App};
use crate::server::error::ApiError;
use crate::server::extract::{AppPath, AppQuery, ShopAccess};
use crate::storage::ActionStatus;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// pending, delivered or dead.
    status: Option<ActionStatus>,
    /// Only actions with a larger id (page on with the last one seen).
    after: Option<u64>,
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Actions {
    shop: String,
    /// In id order.
    actions: Vec<ActionView>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppQuery(filter): AppQuery<Filter>,
) -> Result<Json<Actions>, ApiError> {
    let actions = app.actions(
        &shop.id,
        filter.status,
        filter.after.unwrap_or(0),
        limit(filter.limit)?,
    )?;
    Ok(Json(Actions {
        shop: shop.id.clone(),
        actions,
    }))
}

/// A poller took the action: it is delivered.
pub async fn ack(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, id)): AppPath<(String, u64)>,
) -> Result<Json<ActionView>, ApiError> {
    Ok(Json(app.ack_action(&shop.id, id).await?))
}
