//! Deploys (admin): `GET|POST /v1/shops/{shop}/steps/{step}/versions`,
//! `POST /v1/shops/{shop}/steps/{step}/rollback`, and `GET /v1/audit`.

use super::{limit, query};
use crate::server::App;
use crate::server::auth::authorize_admin;
use crate::server::deploy::DeployError;
use crate::server::error::ApiError;
use crate::step::Step;
use crate::storage::VersionRecord;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn step_param(name: &str) -> Result<Step, ApiError> {
    name.parse::<Step>()
        .ok()
        .or_else(|| super::steps::step_of(name))
        .ok_or_else(|| ApiError::UnknownStep(name.to_string()))
}

impl From<DeployError> for ApiError {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::UnknownShop(shop) => ApiError::UnknownShop(shop),
            DeployError::Rejected(_) => ApiError::Rejected(e.to_string()),
            DeployError::Storage(e) => e.into(),
            DeployError::UnknownVersion { .. } | DeployError::NothingToRollBack { .. } => {
                ApiError::NotFound(e.to_string())
            }
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DeployError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Storage(format!("deploy task failed: {e}")))?
        .map_err(Into::into)
}

pub async fn list(
    State(app): State<Arc<App>>,
    Path((shop, step)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize_admin(&headers, app.admin.as_ref())?;
    let step = step_param(&step)?;
    if app.registry.get(&shop).is_none() {
        return Err(ApiError::UnknownShop(shop));
    }
    let active = app.storage.active(&shop, step)?;
    let versions: Vec<_> = app
        .storage
        .versions(&shop, step)?
        .into_iter()
        .map(|v| {
            let status = if Some(v.version) == active {
                "active"
            } else {
                "inactive"
            };
            let mut view = version_view(&v);
            view["status"] = json!(status);
            view
        })
        .collect();
    Ok(Json(
        json!({ "shop": shop, "step": step, "active": active, "versions": versions }),
    ))
}

/// A version as the API shows it: the listing's fields.
fn version_view(v: &VersionRecord) -> serde_json::Value {
    json!({
        "version": v.version, "digest": v.digest, "source": v.source, "path": v.path,
        "reuse": v.reuse, "actor": v.actor, "at_ms": v.at_ms,
    })
}

/// The version now active, with its config as JSON.
fn activated(v: &VersionRecord) -> serde_json::Value {
    let mut view = version_view(v);
    view["status"] = json!("active");
    view["config"] = serde_json::from_str(&v.config_json).unwrap_or(json!(v.config_json));
    json!({ "status": "active", "version": view })
}

/// Body: the component's bytes. Answers 201 with the new version.
pub async fn deploy(
    State(app): State<Arc<App>>,
    Path((shop, step)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    authorize_admin(&headers, app.admin.as_ref())?;
    let step = step_param(&step)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::TooLarge(crate::server::MAX_COMPONENT_BYTES / 1024)
        }
        _ => ApiError::BadRequest(e.body_text()),
    })?;
    let deployer = app.deployer.clone();
    let record = blocking(move || deployer.deploy_api(&shop, step, body.to_vec(), "admin")).await?;
    Ok((StatusCode::CREATED, Json(activated(&record))))
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
    Path((shop, step)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize_admin(&headers, app.admin.as_ref())?;
    let step = step_param(&step)?;
    let body = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let to: RollbackTo = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackTo::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?
    };
    let deployer = app.deployer.clone();
    let record = blocking(move || deployer.rollback(&shop, step, to.version, "admin")).await?;
    Ok(Json(activated(&record)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    shop: Option<String>,
    limit: Option<usize>,
}

pub async fn audit(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize_admin(&headers, app.admin.as_ref())?;
    let q = query(q)?;
    let events = app.storage.audit(q.shop.as_deref(), limit(q.limit)?)?;
    Ok(Json(json!({ "events": events })))
}
