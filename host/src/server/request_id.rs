//! A request id on every answer (`x-request-id`): the caller's own id
//! when it sends a sane one (a load balancer's, say), else a new one. With
//! the `kefu::request` target at debug (`KEFU_LOG=info,kefu::request=debug`)
//! every log line written while a request is handled names it too: a span
//! per request cost 11–18% of the greeting's throughput at 64 connections
//! (three pairs against the build without it), so it is off by default.
//! Every answer is counted in `kefu_http_requests_total` by route (the
//! route's template, not the path: `/v1/shops/{shop}/{step}`), method and
//! status.

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";

/// A caller's id is kept when it is 1 to 64 letters, digits, `-`, `_` or
/// `.`; anything else is replaced, never echoed.
fn sane(id: &[u8]) -> bool {
    (1..=64).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A new id: this process's start (seconds) and a counter, in hex; unique
/// within the process, and apart from an earlier process's.
fn new_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| chrono::Utc::now().timestamp() as u32);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{start:08x}{n:08x}")).expect("hex is a valid header")
}

pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = match request.headers().get(HEADER) {
        Some(id) if sane(id.as_bytes()) => id.clone(),
        _ => new_id(),
    };
    request.headers_mut().insert(HEADER, id.clone());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().as_str().to_string();
    let span = tracing::debug_span!(
        target: "kefu::request",
        "request",
        id = id.to_str().unwrap_or_default(),
        method = %request.method(),
        path = request.uri().path(),
    );
    let mut response = next.run(request).instrument(span).await;
    metrics::counter!(
        "kefu_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => response.status().as_str().to_string(),
    )
    .increment(1);
    response.headers_mut().insert(HEADER, id);
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_sane_ids_are_kept() {
        assert!(super::sane(b"lb-7f3a.2_x"));
        assert!(!super::sane(b""));
        assert!(!super::sane(&[b'a'; 65]));
        assert!(!super::sane(b"a b"));
        assert!(!super::sane("订单".as_bytes()));
    }
}
