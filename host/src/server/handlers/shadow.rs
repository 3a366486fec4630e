//! Shadow runs (admin): `POST|GET|DELETE /v1/shops/{shop}/steps/{step}/shadow`
//! and `GET .../shadow/examples/{decision}`.

use super::versions::blocking;
use crate::app::{App, ReplayExample, ShadowView};
use crate::server::error::ApiError;
use crate::server::extract::{AdminAccess, AppPath, AppQuery, StepParam, candidate_source};
use crate::storage::Actor;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

/// `?version=N`: the version to run in the shadows (else the body is a
/// component and/or config, as for a deploy).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowQuery {
    version: Option<u64>,
}

/// 201 with the shadow, running on every live decision from now on.
pub async fn start(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
    AppQuery(q): AppQuery<ShadowQuery>,
    request: Request,
) -> Result<(StatusCode, Json<ShadowView>), ApiError> {
    let source = candidate_source(q.version, request, &app, "shadow").await?;
    let view = blocking(move || app.start_shadow(&shop, step, source, Actor::Admin)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// What the shadow found so far, in the replay report's shape.
pub async fn show(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
) -> Result<Json<ShadowView>, ApiError> {
    Ok(Json(app.shadow(&shop, step)?))
}

/// Stop it; what it found.
pub async fn stop(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
) -> Result<Json<ShadowView>, ApiError> {
    Ok(Json(
        blocking(move || app.stop_shadow(&shop, step, Actor::Admin)).await?,
    ))
}

/// One example decision of the shadow, side by side.
pub async fn example(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _, decision)): AppPath<(String, String, u64)>,
) -> Result<Json<ReplayExample>, ApiError> {
    app.shadow_example(&shop, step, decision)?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "decision {decision} is not an example of the shadow"
            ))
        })
}
