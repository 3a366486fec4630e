//! One handler file per API resource. Handlers are thin: extractors say
//! who may call and parse the request, the application does the work.

pub mod actions;
pub mod canary;
pub mod customers;
pub mod decisions;
pub mod events;
pub mod health;
pub mod plugins;
pub mod refunds;
pub mod replays;
pub mod revisits;
pub mod shadow;
pub mod steps;
pub mod timeline;
pub mod versions;
pub mod webhooks;

use super::error::ApiError;

/// Default and largest page size of list endpoints.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// `?limit=N` of list endpoints.
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

/// `?limit=N` alone.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<usize>,
}
