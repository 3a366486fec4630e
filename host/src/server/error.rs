//! The API's one error type: JSON with a stable code and a message naming
//! the problem, `{"error": {"code", "message", "field"?}}`, plus the
//! decision id when a failed call was logged.

use crate::app::{
    AccessError, DeployError, EventError, QuotaExceeded, RevisitError, StepError, WebhookError,
};
use crate::error::CallError;
use crate::storage::StorageError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(
        "no step `{0}`: expected greeting, order-confirmation, refund-decision, revisit-plan or workflow"
    )]
    UnknownStep(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid field `{path}`: {message}")]
    InvalidField { path: String, message: String },
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid path: {0}")]
    InvalidPath(String),
    #[error("method not allowed here; see the README for the API")]
    MethodNotAllowed,
    #[error("request body is larger than the limit of {0} KiB")]
    TooLarge(usize),
    #[error(
        "the request body paused for longer than the server waits (`[http] body_timeout_secs`)"
    )]
    BodyTimeout,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("invalid plugin config: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error(transparent)]
    Revisit(#[from] RevisitError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A handler panicked: a bug in kefu, logged with the request's id.
    #[error("kefu failed while handling this request (a bug, logged with this request's id)")]
    Internal,
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> Self {
        match e {
            EventError::InvalidJson(m) => ApiError::InvalidJson(m),
            EventError::InvalidField { path, message } => ApiError::InvalidField { path, message },
            EventError::TooMany(m) => ApiError::BadRequest(m),
            EventError::Quota(q) => ApiError::Step(StepError::Quota(q)),
            EventError::NotFound(m) => ApiError::NotFound(m),
            EventError::Conflict(m) => ApiError::Conflict(m),
            EventError::Storage(e) => ApiError::Storage(e),
        }
    }
}

/// The code of a step call's failure.
pub fn step_code(e: &StepError) -> &'static str {
    match e {
        StepError::InvalidJson(_) => "invalid_json",
        StepError::InvalidField { .. } => "invalid_field",
        StepError::Unavailable { .. } => "plugin_unavailable",
        StepError::Quota(_) => "quota_exceeded",
        StepError::Plugin { error, .. } => error.code(),
        StepError::Storage { .. } => "storage_error",
        StepError::Task(_) => "host_error",
    }
}

impl ApiError {
    /// The stable code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Access(AccessError::Unauthorized) => "unauthorized",
            ApiError::Access(AccessError::Forbidden) => "forbidden",
            ApiError::Access(AccessError::UnknownShop(_))
            | ApiError::Deploy(DeployError::UnknownShop(_)) => "unknown_shop",
            ApiError::Access(AccessError::Starting(_)) => "starting",
            ApiError::UnknownStep(_) => "unknown_step",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::InvalidPath(_) => "invalid_path",
            ApiError::InvalidConfig(_) => "invalid_config",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::TooLarge(_) => "body_too_large",
            ApiError::BodyTimeout => "request_timeout",
            ApiError::NotFound(_)
            | ApiError::Revisit(RevisitError::NotFound(_))
            | ApiError::Webhook(WebhookError::NotFound(_))
            | ApiError::Deploy(
                DeployError::UnknownVersion { .. }
                | DeployError::NothingToRollBack { .. }
                | DeployError::NoCanary { .. }
                | DeployError::NoShadow { .. },
            ) => "not_found",
            ApiError::BadRequest(_)
            | ApiError::Deploy(DeployError::NoComponent { .. } | DeployError::InvalidCanary(_))
            | ApiError::Revisit(RevisitError::Invalid(_)) => "bad_request",
            ApiError::Conflict(_)
            | ApiError::Revisit(RevisitError::Closed { .. })
            | ApiError::Deploy(
                DeployError::CanaryRunning { .. } | DeployError::ShadowRunning { .. },
            ) => "conflict",
            ApiError::Step(e) => step_code(e),
            ApiError::Deploy(DeployError::Rejected(_) | DeployError::TrialFailed { .. }) => {
                "plugin_rejected"
            }
            ApiError::Internal => "internal_error",
            ApiError::Storage(_)
            | ApiError::Deploy(DeployError::Storage(_))
            | ApiError::Revisit(RevisitError::Storage(_))
            | ApiError::Webhook(WebhookError::Storage(_)) => "storage_error",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.code() {
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "unknown_shop" | "unknown_step" | "not_found" => StatusCode::NOT_FOUND,
            "invalid_json" | "invalid_field" | "invalid_query" | "invalid_path"
            | "invalid_config" | "bad_request" => StatusCode::BAD_REQUEST,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            "conflict" => StatusCode::CONFLICT,
            "body_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "request_timeout" => StatusCode::REQUEST_TIMEOUT,
            "plugin_rejected" => StatusCode::UNPROCESSABLE_ENTITY,
            "quota_exceeded" => StatusCode::TOO_MANY_REQUESTS,
            "plugin_unavailable" | "storage_error" | "host_error" | "starting" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => match self {
                ApiError::Step(StepError::Plugin { error, .. }) => match error {
                    CallError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    CallError::WrongStep { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_GATEWAY,
                },
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn quota(&self) -> Option<&QuotaExceeded> {
        match self {
            ApiError::Step(StepError::Quota(q)) => Some(q),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        self.body_with(self.to_string())
    }

    /// The JSON body with `message` as its message.
    fn body_with(&self, message: String) -> serde_json::Value {
        let mut error = json!({ "code": self.code(), "message": message });
        if let ApiError::InvalidField { path, .. }
        | ApiError::Step(StepError::InvalidField { path, .. }) = self
        {
            error["field"] = json!(path);
        }
        if let Some(q) = self.quota() {
            error["retry_after_secs"] = json!(q.retry_after_secs);
        }
        let mut body = json!({ "error": error });
        if let ApiError::Step(e) = self
            && let Some(id) = e.decision_id()
        {
            body["decision_id"] = json!(id);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if (status == StatusCode::SERVICE_UNAVAILABLE && self.code() != "starting")
            || status == StatusCode::INTERNAL_SERVER_ERROR
        {
            tracing::error!(code = self.code(), error = %self, "request failed");
        }
        let mut response = (status, Json(self.body())).into_response();
        // The same answer in Chinese, for the language layer to send to a
        // caller who prefers it.
        let chinese = self.body_with(super::language::message(&self));
        response
            .extensions_mut()
            .insert(super::language::Chinese(chinese));
        if let Some(q) = self.quota() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, q.retry_after_secs.into());
        }
        if let ApiError::Access(AccessError::Starting(_)) = &self {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, 1.into());
        }
        response
    }
}
