//! The `state` interface: the plugin's key-value state, scoped to the
//! shop and plugin of the call. A read (or delete) the store cannot answer
//! stops the call with [`StateUnavailable`]: read as absent, it would let
//! the plugin decide on what is not so.

use super::log::{LogCtx, LogLevel};
use crate::bindings::state;
use crate::state::{StateError, StateScope, StateStore};
use std::sync::Arc;
use wasmtime::component::HasData;

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value a plugin may store under one key, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one `list-keys` call returns.
pub const MAX_LIST_KEYS: u32 = 1_000;

/// Whose state a call reaches, and where it lives.
pub struct StateCtx {
    pub(super) scope: StateScope,
    pub(super) store: Arc<dyn StateStore>,
}

/// What the `state` functions see: the state, and the log their failures
/// go to.
pub struct StateView<'a> {
    pub(super) ctx: &'a mut StateCtx,
    pub(super) log: &'a mut LogCtx,
}

/// [`HasData`] marker for the `state` interface.
pub struct StateData;

impl HasData for StateData {
    type Data<'a> = StateView<'a>;
}

impl state::Host for StateView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        self.ctx
            .store
            .get(&self.ctx.scope, &key)
            .map_err(|e| self.unavailable(format!("state get `{key}` failed: {e}")))
    }

    fn set(&mut self, key: String, value: String) -> Result<(), state::StateError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(state::StateError::TooLarge(format!(
                "key is {} bytes, the limit is {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(state::StateError::TooLarge(format!(
                "value is {} bytes, the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        self.ctx
            .store
            .set(&self.ctx.scope, &key, &value)
            .map_err(|e| match e {
                StateError::TooLarge(m) => state::StateError::TooLarge(m),
                StateError::QuotaExceeded(m) => state::StateError::QuotaExceeded(m),
                StateError::Unavailable(m) => state::StateError::Unavailable(m),
            })
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        self.ctx
            .store
            .delete(&self.ctx.scope, &key)
            .map_err(|e| self.unavailable(format!("state delete `{key}` failed: {e}")))
    }

    fn list_keys(&mut self, prefix: String, limit: u32) -> wasmtime::Result<Vec<String>> {
        self.page(&prefix, None, limit)
    }

    fn list_keys_after(
        &mut self,
        prefix: String,
        after: String,
        limit: u32,
    ) -> wasmtime::Result<Vec<String>> {
        self.page(&prefix, Some(&after), limit)
    }
}

/// The error a call stops with when its state cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StateUnavailable(pub String);

impl StateView<'_> {
    /// One page of keys, at most [`MAX_LIST_KEYS`].
    fn page(
        &mut self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> wasmtime::Result<Vec<String>> {
        let limit = limit.min(MAX_LIST_KEYS) as usize;
        self.ctx
            .store
            .list_keys(&self.ctx.scope, prefix, after, limit)
            .map_err(|e| self.unavailable(format!("state list-keys failed: {e}")))
    }

    /// Log why the store could not answer, and stop the call.
    fn unavailable(&mut self, why: String) -> wasmtime::Error {
        self.log.push(LogLevel::Error, why.clone());
        wasmtime::Error::new(StateUnavailable(why))
    }
}
