//! How a key reaches kefu over HTTP: `Authorization: Bearer <key>` or
//! `X-Kefu-Key`. Checking it is the application's (`app::access`).

use axum::http::HeaderMap;

/// The key presented, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-kefu-key").and_then(|v| v.to_str().ok()) {
        return Some(value.trim());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    // The scheme is case-insensitive (RFC 9110): `Bearer`, `bearer`...
    let (scheme, key) = auth.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}
