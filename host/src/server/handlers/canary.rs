//! Canaries (admin): `GET|POST|DELETE /v1/shops/{shop}/steps/{step}/canary`
//! and `POST .../canary/promote`.

use super::versions::{Activated, blocking};
use crate::app::{App, CanaryPlan, CanaryView};
use crate::server::error::ApiError;
use crate::server::extract::{
    AdminAccess, AppBody, AppPath, StepParam, parse_json, parse_optional_json,
};
use crate::storage::Actor;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

/// `POST .../canary`: start a canary of a recorded version, or change the
/// running one's percent and plan.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryStart {
    /// The version to serve to `percent` of the customers (default: the
    /// running canary's).
    #[schema(minimum = 0)]
    pub version: Option<u64>,
    /// Above 0, at most 100.
    #[schema(exclusive_minimum = 0, maximum = 100)]
    pub percent: f64,
    /// Automatic promotion: increasing percents, reaching 100 promotes.
    #[serde(default)]
    #[schema(inline, value_type = Vec<f64>)]
    pub steps: Vec<f64>,
    /// Seconds between automatic steps (default 300).
    #[schema(minimum = 1)]
    pub interval_secs: Option<u64>,
}

/// `DELETE .../canary` (body optional): why it is stopped.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryAbort {
    reason: Option<String>,
}

pub async fn show(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
) -> Result<Json<CanaryView>, ApiError> {
    Ok(Json(app.canary(&shop, step)?))
}

/// 201 with the canary and its analysis.
pub async fn start(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
    AppBody(body, _): AppBody,
) -> Result<(StatusCode, Json<CanaryView>), ApiError> {
    let request: CanaryStart = parse_json(&body)?;
    let plan = CanaryPlan {
        percent: request.percent,
        steps: request.steps,
        interval_secs: request.interval_secs,
    };
    let view = blocking(move || app.start_canary(&shop, step, request.version, plan, Actor::Admin))
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The canary's version becomes active for everyone.
pub async fn promote(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
) -> Result<Json<Activated>, ApiError> {
    let started = std::time::Instant::now();
    let version = blocking(move || app.promote_canary(&shop, step, Actor::Admin)).await?;
    Ok(Json(Activated::new(version, started.elapsed())))
}

/// The canary stops; answers its version, now inactive.
pub async fn abort(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
    AppBody(body, _): AppBody,
) -> Result<Json<Activated>, ApiError> {
    let request: CanaryAbort = parse_optional_json(&body)?;
    let reason = request
        .reason
        .unwrap_or_else(|| "aborted by an admin".into());
    let started = std::time::Instant::now();
    let version = blocking(move || app.abort_canary(&shop, step, Actor::Admin, &reason)).await?;
    Ok(Json(Activated::new(version, started.elapsed())))
}
