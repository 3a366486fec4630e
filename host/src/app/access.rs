//! Who may act on a shop: the shop's key or the admin token, compared by
//! SHA-256 (keys are never logged or stored in clear). How a key reaches
//! kefu (a header) is the transport's business.

use super::App;
use super::registry::Shop;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
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

/// Why access is refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("missing API key: send `Authorization: Bearer <key>` or `X-Kefu-Key`")]
    Unauthorized,
    #[error("this key is not allowed here: it is neither this shop's key nor the admin token")]
    Forbidden,
    /// Only told to the admin: anyone else gets what a wrong key gets.
    #[error("no shop `{0}`")]
    UnknownShop(String),
    /// Shops are still loading: the shop may be served in a moment.
    #[error("kefu is starting ({0}) and does not serve this shop yet; retry in a second")]
    Starting(super::Starting),
}

impl App {
    /// Check for the admin token.
    pub fn admin_access(&self, key: Option<&str>) -> Result<(), AccessError> {
        let key = key.ok_or(AccessError::Unauthorized)?;
        match self.admin_digest() {
            Some(token) if same(token, &sha256(key.as_bytes())) => Ok(()),
            _ => Err(AccessError::Forbidden),
        }
    }

    /// The shop `id`, if `key` opens it: the shop's key, or (with
    /// `admin_ok`) the admin token. Only the admin learns that a shop does
    /// not exist; anyone else gets what a wrong key gets (401 without a
    /// key, 403 with one), so shop names cannot be probed.
    pub fn shop_access(
        &self,
        id: &str,
        key: Option<&str>,
        admin_ok: bool,
    ) -> Result<(Arc<Shop>, Caller), AccessError> {
        let Some(shop) = self.shop(id) else {
            if let Some(starting) = self.starting() {
                return Err(AccessError::Starting(starting));
            }
            self.admin_access(key)?;
            return Err(AccessError::UnknownShop(id.to_string()));
        };
        let key = key.ok_or(AccessError::Unauthorized)?;
        let digest = sha256(key.as_bytes());
        if shop.key_sha256.as_ref().is_some_and(|k| same(k, &digest)) {
            return Ok((shop, Caller::Shop));
        }
        if admin_ok && self.admin_digest().is_some_and(|k| same(k, &digest)) {
            return Ok((shop, Caller::Admin));
        }
        Err(AccessError::Forbidden)
    }
}

/// Whose key a console sign-in presented.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOwner {
    /// The admin token: every shop.
    Admin,
    /// One shop's key: that shop only.
    Shop(String),
}

impl KeyOwner {
    /// Whether this owner may see `shop`.
    pub fn opens(&self, shop: &str) -> bool {
        match self {
            KeyOwner::Admin => true,
            KeyOwner::Shop(own) => own == shop,
        }
    }

    /// How the audit names a change this owner made in the console.
    pub fn actor(&self) -> crate::storage::Actor {
        match self {
            KeyOwner::Admin => crate::storage::Actor::ConsoleAdmin,
            KeyOwner::Shop(_) => crate::storage::Actor::ConsoleShop,
        }
    }
}

impl App {
    /// Whose key `key` is: the admin token, or the key of a served shop.
    /// Every shop's digest is compared (no early exit on the first).
    pub fn key_owner(&self, key: &str) -> Option<KeyOwner> {
        let digest = sha256(key.trim().as_bytes());
        if self.admin_digest().is_some_and(|k| same(k, &digest)) {
            return Some(KeyOwner::Admin);
        }
        let shops = self.registry.all();
        let mut owner = None;
        for shop in shops.values() {
            if shop.key_sha256.as_ref().is_some_and(|k| same(k, &digest)) {
                owner = Some(KeyOwner::Shop(shop.id.clone()));
            }
        }
        owner
    }

    /// Note a console sign-in or sign-out in the audit.
    pub fn audit_session(&self, owner: &KeyOwner, signed_in: bool) {
        use crate::storage::{AuditAction, VersionSource};
        let (shop, reason) = match owner {
            KeyOwner::Admin => (String::new(), "admin token"),
            KeyOwner::Shop(id) => (id.clone(), "shop key"),
        };
        let action = match signed_in {
            true => AuditAction::SignedIn,
            false => AuditAction::SignedOut,
        };
        let event = self
            .deployer
            .event(&shop, action, VersionSource::None, owner.actor(), reason);
        self.deployer.audit(event);
    }
}
