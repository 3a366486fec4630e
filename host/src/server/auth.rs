//! Shop keys and the admin token. Keys are compared by SHA-256 and never
//! logged or stored in clear.

use super::error::ApiError;
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The key presented: `Authorization: Bearer <key>` or `X-Kefu-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("x-kefu-key").and_then(|v| v.to_str().ok()) {
        return Some(value.trim());
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    auth.strip_prefix("Bearer ").map(str::trim)
}

/// Compare digests without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Who is calling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Shop,
}

/// Check that the caller holds the shop's key (or, if `admin_ok`, the
/// admin token).
pub fn authorize(
    headers: &HeaderMap,
    shop_key: Option<&[u8; 32]>,
    admin: Option<&[u8; 32]>,
    admin_ok: bool,
) -> Result<Caller, ApiError> {
    let key = presented_key(headers).ok_or(ApiError::Unauthorized)?;
    let digest = sha256(key.as_bytes());
    if shop_key.is_some_and(|k| same(k, &digest)) {
        return Ok(Caller::Shop);
    }
    if admin_ok && admin.is_some_and(|k| same(k, &digest)) {
        return Ok(Caller::Admin);
    }
    Err(ApiError::Forbidden)
}

/// Check for the admin token.
pub fn authorize_admin(headers: &HeaderMap, admin: Option<&[u8; 32]>) -> Result<(), ApiError> {
    let key = presented_key(headers).ok_or(ApiError::Unauthorized)?;
    match admin {
        Some(token) if same(token, &sha256(key.as_bytes())) => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}
