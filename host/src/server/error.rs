//! API errors: JSON with a stable code and a message naming the problem.

use crate::error::CallError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no shop `{0}`")]
    UnknownShop(String),
    #[error(
        "no step `{0}`: expected greeting, order-confirmation, refund-decision or revisit-plan"
    )]
    UnknownStep(String),
    #[error("missing API key: send `Authorization: Bearer <key>` or `X-Kefu-Key`")]
    Unauthorized,
    #[error("this key is not allowed here: it is neither this shop's key nor the admin token")]
    Forbidden,
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid field `{path}`: {message}")]
    InvalidField { path: String, message: String },
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("request body is larger than the limit of {0} KiB")]
    TooLarge(usize),
    #[error("shop `{shop}` has no working plugin for step `{step}`: {reason}")]
    PluginUnavailable {
        shop: String,
        step: String,
        reason: String,
    },
    #[error("{0}")]
    Plugin(CallError),
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Rejected(String),
    #[error(transparent)]
    Quota(#[from] super::quota::QuotaExceeded),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownShop(_) => "unknown_shop",
            ApiError::UnknownStep(_) => "unknown_step",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::PluginUnavailable { .. } => "plugin_unavailable",
            ApiError::Plugin(e) => e.code(),
            ApiError::Storage(_) => "storage_error",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Rejected(_) => "plugin_rejected",
            ApiError::Quota(_) => "quota_exceeded",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownShop(_) | ApiError::UnknownStep(_) | ApiError::NotFound(_) => {
                StatusCode::NOT_FOUND
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::InvalidJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidQuery(_)
            | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::PluginUnavailable { .. } | ApiError::Storage(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Plugin(CallError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Plugin(CallError::Host(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Plugin(CallError::WrongStep { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Plugin(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The JSON body, with extra fields (e.g. the decision id).
    pub fn body(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let ApiError::InvalidField { path, .. } = self {
            error["field"] = json!(path);
        }
        if let ApiError::Quota(q) = self {
            error["retry_after_secs"] = json!(q.retry_after_secs);
        }
        let mut body = json!({ "error": error });
        if let serde_json::Value::Object(map) = extra {
            for (k, v) in map {
                body[k] = v;
            }
        }
        body
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::Storage(e.to_string())
    }
}

impl ApiError {
    /// The HTTP response, with `extra` fields in the body and a
    /// `Retry-After` header for quota refusals.
    pub fn response(&self, extra: serde_json::Value) -> Response {
        let mut response = (self.status(), Json(self.body(extra))).into_response();
        if let ApiError::Quota(q) = self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, q.retry_after_secs.into());
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.response(json!({}))
    }
}
