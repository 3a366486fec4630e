//! The plugin key-value state behind the `state` WIT interface.
//!
//! Keys are scoped by (shop, plugin): a plugin only ever sees the keys it
//! wrote for the shop it is called for. The server backs this with its
//! storage module; `kefu run` uses [`MemoryStateStore`].

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Whose state a call may touch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateScope {
    /// The shop the call is for.
    pub shop: String,
    /// The plugin's stable name within the shop (its step, by default), so
    /// that a new version of a plugin keeps its state.
    pub plugin: String,
}

impl StateScope {
    pub fn new(shop: impl Into<String>, plugin: impl Into<String>) -> Self {
        StateScope {
            shop: shop.into(),
            plugin: plugin.into(),
        }
    }
}

/// Why a state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// A store for plugin state. Implementations must keep scopes apart.
pub trait StateStore: Send + Sync {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError>;
    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError>;
    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError>;
    /// Keys starting with `prefix`, after `after` (exclusive) when given,
    /// in byte order, at most `limit`.
    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError>;
}

/// An in-memory store, for `kefu run` and tests.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    map: Mutex<BTreeMap<(StateScope, String), String>>,
}

impl MemoryStateStore {
    /// Every entry, for saving a `kefu run` session's state.
    pub fn entries(&self) -> Vec<(StateScope, String, String)> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .map(|((scope, key), value)| (scope.clone(), key.clone(), value.clone()))
            .collect()
    }
}

impl StateStore for MemoryStateStore {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.get(&(scope.clone(), key.to_string())).cloned())
    }

    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((scope.clone(), key.to_string()), value.to_string());
        Ok(())
    }

    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        Ok(map.remove(&(scope.clone(), key.to_string())).is_some())
    }

    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        use std::ops::Bound;
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded((scope.clone(), after.to_string())),
            _ => Bound::Included((scope.clone(), prefix.to_string())),
        };
        Ok(map
            .range((start, Bound::Unbounded))
            .take_while(|((s, k), _)| s == scope && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), _)| k.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(shop: &str) -> StateScope {
        StateScope::new(shop, "refund-policy")
    }

    #[test]
    fn scopes_are_kept_apart() {
        let store = MemoryStateStore::default();
        store.set(&scope("a"), "k", "1").unwrap();
        assert_eq!(store.get(&scope("b"), "k").unwrap(), None);
        assert_eq!(store.get(&scope("a"), "k").unwrap().as_deref(), Some("1"));
        assert!(
            store
                .list_keys(&scope("b"), "", None, 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn list_keys_respects_prefix_and_limit() {
        let store = MemoryStateStore::default();
        for k in ["a1", "a2", "a3", "b1"] {
            store.set(&scope("s"), k, "v").unwrap();
        }
        store.set(&scope("t"), "a0", "v").unwrap();
        assert_eq!(
            store.list_keys(&scope("s"), "a", None, 2).unwrap(),
            vec!["a1", "a2"]
        );
        assert_eq!(
            store.list_keys(&scope("s"), "a", Some("a2"), 2).unwrap(),
            vec!["a3"]
        );
        assert_eq!(
            store.list_keys(&scope("s"), "b", Some("a9"), 10).unwrap(),
            vec!["b1"],
            "an `after` before the prefix starts at the prefix"
        );
        assert!(
            store
                .list_keys(&scope("s"), "a", Some("b"), 10)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.list_keys(&scope("s"), "b", None, 10).unwrap(),
            vec!["b1"]
        );
        assert!(store.delete(&scope("s"), "b1").unwrap());
        assert!(!store.delete(&scope("s"), "b1").unwrap());
    }
}
