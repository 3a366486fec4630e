//! `/healthz` (the process answers), `/readyz` (shops are loaded),
//! `/metrics` (Prometheus text) and `/v1/openapi.json`.

use crate::server::App;
use crate::step::Step;
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
    record_shop_gauges(&app);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        app.metrics.render(),
    )
}

/// What is loaded, counted at each scrape so it is always current.
fn record_shop_gauges(app: &App) {
    let shops = app.registry.all();
    // As in `GET /v1/plugins`.
    let (active, unavailable) = shops.values().fold((0, 0), |(a, u), shop| {
        let down = Step::ALL.into_iter();
        let down = down.filter(|&step| shop.unavailable_reason(step).is_some());
        (a + shop.steps.len(), u + down.count())
    });
    metrics::gauge!("kefu_shops").set(shops.len() as f64);
    metrics::gauge!("kefu_steps", "status" => "active").set(active as f64);
    metrics::gauge!("kefu_steps", "status" => "unavailable").set(unavailable as f64);
    metrics::gauge!("kefu_load_failures").set(app.registry.failures().len() as f64);
}

/// The OpenAPI description, generated from the code (no auth needed).
pub async fn openapi(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut shops: Vec<String> = app.registry.all().keys().cloned().collect();
    shops.sort();
    let text = crate::server::openapi::spec(&shops)
        .to_json()
        .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        text,
    )
}
