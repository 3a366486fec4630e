//! Deploys (admin): `GET|POST /v1/shops/{shop}/steps/{step}/versions`,
//! `POST /v1/shops/{shop}/steps/{step}/rollback`, and `GET /v1/audit`.

use super::limit;
use crate::app::AuditView;
use crate::app::{App, VersionView, VersionsView};
use crate::server::error::ApiError;
use crate::server::extract::{
    AdminAccess, AppBody, AppPath, AppQuery, DeployUpload, StepParam, parse_optional_json,
};
use crate::storage::{Actor, StorageError};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A deploy's or rollback's answer: the version now active (or, deployed
/// as a canary, serving its share of customers).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Activated {
    /// "active", or "canary" for a deploy with a `canary` part.
    status: &'static str,
    version: VersionView,
    /// How long it took: compiling (a Rust plugin well under a second,
    /// Python or JavaScript seconds), checking and trying the version.
    took_ms: u64,
}

impl Activated {
    pub(super) fn new(version: VersionView, took: std::time::Duration) -> Self {
        Activated {
            status: version.status,
            version,
            took_ms: took.as_millis() as u64,
        }
    }
}

/// Run a blocking application call (it compiles) off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::app::DeployError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Storage(StorageError::Backend(format!("deploy task failed: {e}"))))?
        .map_err(Into::into)
}

pub async fn list(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
) -> Result<Json<VersionsView>, ApiError> {
    Ok(Json(app.versions(&shop, step)?))
}

/// A deploy still compiling when the wait ran out.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Pending {
    /// Always "compiling".
    status: &'static str,
    message: String,
    /// Where the version shows once active (or the audit, once refused).
    versions: String,
}

/// Body: the component's bytes, or a multipart form with `component`
/// and/or `config`. Answers 201 with the new version once it is active,
/// 422 when it is refused, or 202 when compiling takes longer than the
/// server waits (`deploy_wait_secs`): the deploy goes on and activates (or
/// is refused, in the audit) when done.
pub async fn deploy(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
    DeployUpload(request): DeployUpload,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let wait = std::time::Duration::from_secs(app.config().deploy_wait_secs);
    let versions = format!("/v1/shops/{shop}/steps/{step}/versions");
    let started = std::time::Instant::now();
    let task = blocking(move || app.deploy(&shop, step, request, Actor::Admin));
    match tokio::time::timeout(wait, task).await {
        Ok(done) => {
            let version = done?;
            let answer = Activated::new(version, started.elapsed());
            Ok((StatusCode::CREATED, Json(answer)).into_response())
        }
        Err(_) => Ok((
            StatusCode::ACCEPTED,
            Json(Pending {
                status: "compiling",
                message: format!(
                    "still compiling after {} s; it activates when done if its trial passes (see the versions and the audit)",
                    wait.as_secs()
                ),
                versions,
            }),
        )
            .into_response()),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackTo {
    version: Option<u64>,
}

/// Body (optional): `{"version": N}`; without it, the version before the
/// active one.
pub async fn rollback(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    StepParam(step): StepParam,
    AppPath((shop, _)): AppPath<(String, String)>,
    AppBody(body, _): AppBody,
) -> Result<Json<Activated>, ApiError> {
    let to: RollbackTo = parse_optional_json(&body)?;
    let started = std::time::Instant::now();
    let version = blocking(move || app.rollback(&shop, step, to.version, Actor::Admin)).await?;
    Ok(Json(Activated::new(version, started.elapsed())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    shop: Option<String>,
    limit: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Audit {
    events: Vec<AuditView>,
}

pub async fn audit(
    State(app): State<Arc<App>>,
    _: AdminAccess,
    AppQuery(q): AppQuery<AuditQuery>,
) -> Result<Json<Audit>, ApiError> {
    let events = app.audit(q.shop.as_deref(), limit(q.limit)?)?;
    Ok(Json(Audit { events }))
}
