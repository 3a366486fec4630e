//! The workflow's inbox: `POST /v1/shops/{shop}/events` (one event or a
//! batch), `GET .../events/{id}` and `POST .../events/{id}/retry`.

use crate::app::{Accepted, App, EventView};
use crate::server::error::ApiError;
use crate::server::extract::{AppBody, AppPath, EventBatch, ShopAccess, ShopKey};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct AcceptedEvents {
    shop: String,
    /// One per event sent, in order.
    events: Vec<Accepted>,
}

/// 202 once every new event is durable in the shop's inbox.
pub async fn accept(
    State(app): State<Arc<App>>,
    ShopKey(shop): ShopKey,
    AppBody(body, _): AppBody<EventBatch>,
) -> Result<(StatusCode, Json<AcceptedEvents>), ApiError> {
    let events = app.accept_events(&shop, &body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(AcceptedEvents {
            shop: shop.id.clone(),
            events,
        }),
    ))
}

pub async fn show(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, id)): AppPath<(String, String)>,
) -> Result<Json<EventView>, ApiError> {
    Ok(Json(app.event(&shop.id, &id)?))
}

/// Put a failed event back in the inbox.
pub async fn retry(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, id)): AppPath<(String, String)>,
) -> Result<(StatusCode, Json<EventView>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(app.retry_event(&shop.id, &id).await?),
    ))
}
