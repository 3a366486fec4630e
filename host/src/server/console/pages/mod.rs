//! One file per console page (or small group of pages).

pub mod audit;
pub mod decisions;
pub mod kpis;
pub mod overview;
pub mod replays;
pub mod revisits;
pub mod shop;
pub mod sign_in;
pub mod step;
pub mod timeline;

use axum::http::header;
use axum::response::IntoResponse;

/// `GET /console/style.css`.
pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        super::page::STYLE,
    )
}
