//! `/healthz` (the process answers), `/readyz` (shops are loaded) and
//! `/metrics` (Prometheus text).

use crate::server::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub async fn healthz() -> impl IntoResponse {
    (StatusCode::OK, "ok\n")
}

pub async fn readyz(State(app): State<Arc<App>>) -> impl IntoResponse {
    if app.ready.load(Ordering::Acquire) {
        (
            StatusCode::OK,
            format!("ready: {} shops\n", app.registry.all().len()),
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_string())
    }
}

pub async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
}
