//! Replays (admin): `POST /v1/shops/{shop}/steps/{step}/replays`,
//! `GET .../replays/{id}` and `GET .../replays/{id}/examples/{decision}`.

use super::versions::blocking;
use crate::app::{App, ReplayExample, ReplayFilters, ReplayView};
use crate::server::error::ApiError;
use crate::server::extract::{AdminAccess, AppPath, AppQuery, StepParam, candidate_source};
use crate::storage::Actor;
use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;

/// `?version=N&since=&until=&limit=`: the version to replay (else the
/// body is a component and/or config, as for a deploy), and which logged
/// decisions (unix ms, the oldest first).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayQuery {
    version: Option<u64>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<u64>,
}

/// 202 with the replay, running; follow it at `GET .../replays/{id}`.
pub async fn start(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
    AppQuery(q): AppQuery<ReplayQuery>,
    request: Request,
) -> Result<(StatusCode, Json<ReplayView>), ApiError> {
    if q.limit == Some(0) {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    let source = candidate_source(q.version, request, &app, "replay").await?;
    let filters = ReplayFilters {
        since_ms: q.since,
        until_ms: q.until,
        limit: q.limit,
    };
    let view =
        blocking(move || app.start_replay(&shop, step, source, filters, Actor::Admin)).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// The replay: progress, then its report.
pub async fn show(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _, id)): AppPath<(String, String, u64)>,
) -> Result<Json<ReplayView>, ApiError> {
    app.replay(&shop, step, id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no replay {id} of shop `{shop}` step `{step}`")))
}

/// One example decision of a finished replay, side by side.
pub async fn example(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _, id, decision)): AppPath<(String, String, u64, u64)>,
) -> Result<Json<ReplayExample>, ApiError> {
    app.replay_example(&shop, step, id, decision)
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "decision {decision} is not an example of finished replay {id}"
            ))
        })
}
