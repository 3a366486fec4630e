//! One handler file per API resource.

pub mod customers;
pub mod decisions;
pub mod health;
pub mod plugins;
pub mod refunds;
pub mod revisits;
pub mod steps;
pub mod versions;

use super::App;
use super::auth::{Caller, authorize, authorize_admin};
use super::error::ApiError;
use super::shops::Shop;
use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderMap;
use serde::Deserialize;
use std::sync::Arc;

/// Default and largest page size of list endpoints.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The shop named in the path, if the caller may use it.
pub fn shop_for(
    app: &App,
    headers: &HeaderMap,
    id: &str,
    admin_ok: bool,
) -> Result<(Arc<Shop>, Caller), ApiError> {
    let Some(shop) = app.registry.get(id) else {
        // Only the admin learns that a shop does not exist. Anyone else
        // gets what a wrong key gets (401 without a key, 403 with one), so
        // shop names cannot be probed.
        authorize_admin(headers, app.admin.as_ref())?;
        return Err(ApiError::UnknownShop(id.to_string()));
    };
    let caller = authorize(
        headers,
        shop.key_sha256.as_ref(),
        app.admin.as_ref(),
        admin_ok,
    )?;
    Ok((shop, caller))
}

/// `?limit=N` of list endpoints.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<usize>,
}

pub fn limit(requested: Option<usize>) -> Result<usize, ApiError> {
    match requested {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::InvalidQuery("limit must be at least 1".into())),
        Some(n) if n > MAX_LIMIT => Err(ApiError::InvalidQuery(format!(
            "limit must be at most {MAX_LIMIT}"
        ))),
        Some(n) => Ok(n),
    }
}

/// A query string, or a JSON error naming what is wrong with it.
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::InvalidQuery(e.body_text()))
}
