//! `GET /v1/shops/{shop}/decisions?step=&customer=&order=&version=&since=&until=&limit=`:
//! the decision log of a shop, newest first; times are unix milliseconds.

use super::limit;
use crate::app::App;
use crate::app::DecisionView;
use crate::server::error::ApiError;
use crate::server::extract::{AppQuery, ShopAccess};
use crate::steps::Step;
use crate::storage::DecisionQuery;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    step: Option<String>,
    customer: Option<String>,
    order: Option<String>,
    version: Option<u64>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Decisions {
    shop: String,
    decisions: Vec<DecisionView>,
}

pub async fn list(
    State(app): State<Arc<App>>,
    ShopAccess(shop): ShopAccess,
    AppQuery(filter): AppQuery<Filter>,
) -> Result<Json<Decisions>, ApiError> {
    let step = match filter.step.as_deref() {
        None => None,
        Some(s) => Some(Step::from_name_or_endpoint(s).ok_or_else(|| {
            ApiError::InvalidQuery(crate::steps::UnknownStep(s.to_string()).to_string())
        })?),
    };
    let decisions = app.decisions(&DecisionQuery {
        shop: shop.id.clone(),
        step,
        since_ms: filter.since,
        until_ms: filter.until,
        customer: filter.customer,
        order: filter.order,
        version: filter.version,
        limit: limit(filter.limit)?,
        scan_limit: None,
    })?;
    Ok(Json(Decisions {
        shop: shop.id.clone(),
        decisions,
    }))
}
