//! A shop's undelivered revisit webhooks:
//! - `GET  /v1/shops/{shop}/webhooks?status=queued|dead`: what waits to be
//!   delivered, and what was given up on (dead-lettered)
//! - `POST /v1/shops/{shop}/webhooks/{key}/retry`: try one again now

use crate::app::{App, DeliveryView};
use crate::server::error::ApiError;
use crate::server::extract::{AppPath, AppQuery, ShopAccess};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// "dead" for the dead-lettered only; "queued" or nothing for all.
    status: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Webhooks {
    shop: String,
    webhooks: Vec<DeliveryView>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct OneWebhook {
    webhook: DeliveryView,
}

pub async fn list(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppQuery(q): AppQuery<ListQuery>,
) -> Result<Json<Webhooks>, ApiError> {
    let dead_only = match q.status.as_deref() {
        None | Some("queued") => false,
        Some("dead") => true,
        Some(other) => {
            return Err(ApiError::InvalidQuery(format!(
                "status `{other}` is not queued or dead"
            )));
        }
    };
    let mut webhooks = app.webhooks(&shop.id, dead_only)?;
    if q.status.as_deref() == Some("queued") {
        webhooks.retain(|w| w.status == "queued");
    }
    Ok(Json(Webhooks {
        shop: shop.id.clone(),
        webhooks,
    }))
}

pub async fn retry(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, key)): AppPath<(String, String)>,
) -> Result<Json<OneWebhook>, ApiError> {
    let webhook = app.retry_webhook(&shop.id, &key).await?;
    Ok(Json(OneWebhook { webhook }))
}
