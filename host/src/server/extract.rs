//! Extractors: who may call (a shop's key, or the admin token), the step
//! named in the path, and bodies and queries whose rejections speak the
//! API's error format.

use super::auth::presented_key;
use super::error::ApiError;
use crate::app::config::{ConfigFormat, plugin_config};
use crate::app::{App, CanaryPlan, DeployRequest, ReplaySource, Shop};
use crate::steps::Step;
use crate::storage::Actor;
use axum::body::Bytes;
use axum::extract::multipart::MultipartError;
use axum::extract::{
    FromRequest, FromRequestParts, Multipart, Path, Query, RawPathParams, Request,
};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;
use std::sync::Arc;

/// The `{shop}` path parameter.
async fn shop_param(parts: &mut Parts, app: &Arc<App>) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, app)
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    params
        .iter()
        .find(|(name, _)| *name == "shop")
        .map(|(_, value)| value.to_string())
        .ok_or_else(|| ApiError::NotFound("no shop in the path".into()))
}

/// A shop opened with its own key or the admin token: reading a shop's
/// records and the agents' work on its revisits.
pub struct ShopAccess(pub Arc<Shop>);

impl FromRequestParts<Arc<App>> for ShopAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let id = shop_param(parts, app).await?;
        let (shop, _) = app.shop_access(&id, presented_key(&parts.headers), true)?;
        Ok(ShopAccess(shop))
    }
}

/// A shop opened with its own key or the admin token, and which of them
/// (for the audit).
pub struct ShopCaller(pub Arc<Shop>, pub Actor);

impl FromRequestParts<Arc<App>> for ShopCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let id = shop_param(parts, app).await?;
        let (shop, caller) = app.shop_access(&id, presented_key(&parts.headers), true)?;
        let actor = match caller {
            crate::app::Caller::Admin => Actor::Admin,
            crate::app::Caller::Shop => Actor::ShopKey,
        };
        Ok(ShopCaller(shop, actor))
    }
}

/// A shop opened with its own key only: running its steps.
pub struct ShopKey(pub Arc<Shop>);

impl FromRequestParts<Arc<App>> for ShopKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let id = shop_param(parts, app).await?;
        let (shop, _) = app.shop_access(&id, presented_key(&parts.headers), false)?;
        Ok(ShopKey(shop))
    }
}

/// The admin token.
pub struct AdminAccess;

impl FromRequestParts<Arc<App>> for AdminAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        app.admin_access(presented_key(&parts.headers))?;
        Ok(AdminAccess)
    }
}

/// The `{step}` path parameter: a step's name or its endpoint's.
pub struct StepParam(pub Step);

impl FromRequestParts<Arc<App>> for StepParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, ApiError> {
        let params = RawPathParams::from_request_parts(parts, app)
            .await
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let name = params
            .iter()
            .find(|(name, _)| *name == "step")
            .map(|(_, value)| value)
            .unwrap_or_default();
        Step::from_name_or_endpoint(name)
            .map(StepParam)
            .ok_or_else(|| ApiError::UnknownStep(name.to_string()))
    }
}

/// Path parameters; a bad one (a revisit id that is not a number) is
/// `invalid_path` naming the problem, in the API's JSON like every error.
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| AppPath(t))
            .map_err(|e| ApiError::InvalidPath(e.body_text()))
    }
}

/// A query string; a bad one is `invalid_query` naming the problem.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| AppQuery(t))
            .map_err(|e| ApiError::InvalidQuery(e.body_text()))
    }
}

/// How large a route's body may be, in KiB (the same figure its
/// `DefaultBodyLimit` layer enforces, so a 413 names it).
pub trait BodyLimit: Send + Sync + 'static {
    fn kib(app: &App) -> usize;
}

/// The server config's `max_body_kib`: step calls and small bodies.
pub struct Configured;
impl BodyLimit for Configured {
    fn kib(app: &App) -> usize {
        app.max_body() / 1024
    }
}

/// A deployed component (Python and JavaScript components carry their
/// interpreter: tens of MB).
pub struct Component;
/// Largest component accepted by the deploy API, bytes.
pub const MAX_COMPONENT_BYTES: usize = 128 << 20;
impl BodyLimit for Component {
    fn kib(_: &App) -> usize {
        MAX_COMPONENT_BYTES / 1024
    }
}

/// A bulk revisit plan.
pub struct BulkPlan;
/// Largest bulk-plan body, bytes.
pub const MAX_PLANS_BYTES: usize = 64 << 20;
impl BodyLimit for BulkPlan {
    fn kib(_: &App) -> usize {
        MAX_PLANS_BYTES / 1024
    }
}

/// A batch of workflow events (up to 500).
pub struct EventBatch;
/// Largest events body, bytes.
pub const MAX_EVENTS_BYTES: usize = 8 << 20;
impl BodyLimit for EventBatch {
    fn kib(_: &App) -> usize {
        MAX_EVENTS_BYTES / 1024
    }
}

/// A request body as bytes; over the limit it is `body_too_large`.
pub struct AppBody<L: BodyLimit = Configured>(pub Bytes, pub PhantomData<L>);

impl<L: BodyLimit> FromRequest<Arc<App>> for AppBody<L> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        Bytes::from_request(req, app)
            .await
            .map(|bytes| AppBody(bytes, PhantomData))
            .map_err(|e| match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(L::kib(app)),
                _ if timed_out(&e) => ApiError::BodyTimeout,
                _ => ApiError::BadRequest(e.body_text()),
            })
    }
}

/// Whether a body failed because it paused for longer than the transport
/// allows (`[http] body_timeout_secs`).
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A JSON body (whatever its content type); an error names the field's
/// path (`invalid_field`) or the syntax error (`invalid_json`).
pub struct AppJson<T, L: BodyLimit = Configured>(pub T, pub PhantomData<L>);

impl<T: DeserializeOwned, L: BodyLimit> FromRequest<Arc<App>> for AppJson<T, L> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let AppBody(bytes, _) = AppBody::<L>::from_request(req, app).await?;
        parse_json(&bytes).map(|t| AppJson(t, PhantomData))
    }
}

/// Parse JSON, naming the offending field's path; `2.0` reads as the
/// integer 2 (see `crate::json`).
/// An optional JSON body: empty (or blank) is the default.
pub fn parse_optional_json<T: DeserializeOwned + Default>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(bytes)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match parse_exact(bytes) {
        Err(ApiError::InvalidField { message, .. })
            if crate::json::is_float_for_integer(&message) =>
        {
            match crate::json::integral_floats_as_integers(bytes) {
                Some(fixed) => parse_exact(&fixed),
                None => parse_exact(bytes),
            }
        }
        parsed => parsed,
    }
}

fn parse_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        if e.inner().is_data() {
            ApiError::InvalidField {
                path: e.path().to_string(),
                message: e.inner().to_string(),
            }
        } else {
            ApiError::InvalidJson(e.inner().to_string())
        }
    })?;
    de.end().map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    Ok(value)
}

/// A deploy's body: the component's bytes alone (the step's config is
/// kept), or `multipart/form-data` with a `component` part, a `config`
/// part (a JSON object or a TOML table), or both.
pub struct DeployUpload(pub DeployRequest);

impl FromRequest<Arc<App>> for DeployUpload {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Arc<App>) -> Result<Self, ApiError> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        if !multipart {
            let AppBody(bytes, _) = AppBody::<Component>::from_request(req, app).await?;
            return Ok(DeployUpload(DeployRequest {
                component: Some(bytes.to_vec()),
                config_json: None,
                canary: None,
            }));
        }
        let too_large = |e: MultipartError| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(Component::kib(app)),
            _ if timed_out(&e) => ApiError::BodyTimeout,
            _ => ApiError::BadRequest(format!("multipart body: {}", e.body_text())),
        };
        let mut form = Multipart::from_request(req, app)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        let mut request = DeployRequest::default();
        while let Some(field) = form.next_field().await.map_err(too_large)? {
            let name = field.name().unwrap_or_default().to_string();
            let format = config_format(field.content_type(), field.file_name());
            let bytes = field.bytes().await.map_err(too_large)?;
            match name.as_str() {
                "component" => request.component = Some(bytes.to_vec()),
                "config" => {
                    let text = std::str::from_utf8(&bytes).map_err(|_| {
                        ApiError::InvalidConfig("the config part is not UTF-8".into())
                    })?;
                    let format = format.unwrap_or(if text.trim_start().starts_with('{') {
                        ConfigFormat::Json
                    } else {
                        ConfigFormat::Toml
                    });
                    request.config_json =
                        Some(plugin_config(text, format).map_err(ApiError::InvalidConfig)?);
                }
                "canary" => request.canary = Some(canary_plan(&bytes)?),
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown part `{other}`: a deploy takes `component`, `config` and `canary`"
                    )));
                }
            }
        }
        if request.component.is_none() && request.config_json.is_none() {
            return Err(ApiError::BadRequest(
                "a deploy needs a `component` part, a `config` part, or both".into(),
            ));
        }
        Ok(DeployUpload(request))
    }
}

/// What a replay or shadow runs: recorded version `version`, or the
/// request's body, a `component` (and a `config`) as for a deploy.
pub async fn candidate_source(
    version: Option<u64>,
    request: Request,
    app: &Arc<App>,
    what: &str,
) -> Result<ReplaySource, ApiError> {
    if let Some(version) = version {
        return Ok(ReplaySource::Version(version));
    }
    let DeployUpload(upload) = DeployUpload::from_request(request, app).await?;
    if upload.canary.is_some() {
        return Err(ApiError::BadRequest(format!(
            "a {what} takes `component` and `config`, not `canary`"
        )));
    }
    let Some(component) = upload.component else {
        return Err(ApiError::BadRequest(format!(
            "a {what} needs `?version=N` or a `component` (with a `config` or not)"
        )));
    };
    Ok(ReplaySource::Upload {
        component,
        config_json: upload.config_json,
    })
}

/// A deploy's `canary` part: a percent (`10`), or a plan as JSON
/// (`{"percent": 5, "steps": [25, 50, 100], "interval_secs": 600}`).
fn canary_plan(bytes: &[u8]) -> Result<CanaryPlan, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ApiError::BadRequest("the canary part is not UTF-8".into()))?
        .trim();
    if let Ok(percent) = text.parse::<f64>() {
        return Ok(CanaryPlan {
            percent,
            steps: Vec::new(),
            interval_secs: None,
        });
    }
    serde_json::from_str(text).map_err(|e| {
        ApiError::BadRequest(format!(
            "the canary part must be a percent or a JSON plan ({{\"percent\": 5, \"steps\": [25, 100]}}): {e}"
        ))
    })
}

/// A config part's format from its content type or file name, when they
/// say.
fn config_format(content_type: Option<&str>, file_name: Option<&str>) -> Option<ConfigFormat> {
    let ext = file_name.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e);
    match (content_type, ext) {
        (Some(t), _) if t.contains("json") => Some(ConfigFormat::Json),
        (Some(t), _) if t.contains("toml") => Some(ConfigFormat::Toml),
        (_, Some("json")) => Some(ConfigFormat::Json),
        (_, Some("toml")) => Some(ConfigFormat::Toml),
        _ => None,
    }
}
