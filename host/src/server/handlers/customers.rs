//! `POST|DELETE /v1/shops/{shop}/customers/{customer}/do-not-contact`:
//! a customer who asked not to be contacted: their open revisits are
//! cancelled and new ones are kept cancelled.

use crate::app::App;
use crate::server::error::ApiError;
use crate::server::extract::{AppPath, ShopAccess};
use axum::Json;
use axum::extract::State;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize, utoipa::ToSchema)]
pub struct DoNotContact {
    customer: String,
    do_not_contact: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    cancelled_revisits: Option<usize>,
}

pub async fn set(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, customer)): AppPath<(String, String)>,
) -> Result<Json<DoNotContact>, ApiError> {
    let cancelled = app.set_do_not_contact(&shop.id, &customer, true).await?;
    Ok(Json(DoNotContact {
        customer,
        do_not_contact: true,
        cancelled_revisits: Some(cancelled),
    }))
}

pub async fn clear(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppPath((_, customer)): AppPath<(String, String)>,
) -> Result<Json<DoNotContact>, ApiError> {
    app.set_do_not_contact(&shop.id, &customer, false).await?;
    Ok(Json(DoNotContact {
        customer,
        do_not_contact: false,
        cancelled_revisits: None,
    }))
}
