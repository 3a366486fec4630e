//! `GET /v1/plugins` (admin): per shop and step, the active plugin, and
//! what failed to load and why.

use crate::server::App;
use crate::server::auth::authorize_admin;
use crate::server::error::ApiError;
use crate::step::Step;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn list(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize_admin(&headers, app.admin.as_ref())?;
    let shops = app.registry.all();
    let mut ids: Vec<&String> = shops.keys().collect();
    ids.sort();
    let mut plugins = Vec::new();
    for id in ids {
        let shop = &shops[id];
        for step in Step::ALL {
            if let Some(active) = shop.steps.get(&step) {
                plugins.push(json!({
                    "shop": shop.id,
                    "step": step,
                    "status": "active",
                    "digest": active.plugin.digest(),
                    "version": active.version,
                    "source": active.source,
                    "instances": if active.pool.is_some() { "reuse" } else { "fresh" },
                    "loaded_at_ms": active.loaded_at_ms,
                    "calls": active.calls.load(Ordering::Relaxed),
                    "errors": active.errors.load(Ordering::Relaxed),
                }));
            } else if let Some(reason) = shop.unavailable_reason(step) {
                plugins.push(json!({ "shop": shop.id, "step": step, "status": "unavailable", "reason": reason }));
            }
        }
    }
    Ok(Json(json!({
        "plugins": plugins,
        "failures": app.registry.failures(),
        // Components compiled since start (not found in the disk cache).
        "compilations": app.runtime.compilations(),
    })))
}
