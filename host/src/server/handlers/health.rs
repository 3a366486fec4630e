//! `/healthz` (the process answers), `/readyz` (shops are loaded),
//! `/metrics` (Prometheus text) and `/v1/openapi.json`.

use crate::app::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::Arc;

pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if let Some(reason) = app.storage_failing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("storage failing: {reason}\n"),
        );
    }
    if app.is_ready() {
        let mut text = format!("ready: {} shops\n", app.counts().0);
        for (shop, reason) in app.degraded_shops() {
            text.push_str(&format!("degraded: {shop}: {reason}\n"));
        }
        (StatusCode::OK, text)
    } else {
        let progress = app
            .starting()
            .map_or_else(|| ": shops loaded".to_string(), |s| format!(": {s}"));
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("starting{progress}\n"),
        )
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    // Counting the backlog gauges reads storage: off the async workers.
    let text = tokio::task::spawn_blocking(move || app.render_metrics())
        .await
        .unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
}

/// The OpenAPI description, generated from the code (no auth needed).
pub async fn openapi(State(app): State<Arc<App>>) -> impl IntoResponse {
    let text = crate::server::openapi::spec_json(&app.shop_ids()).to_string();
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
}
