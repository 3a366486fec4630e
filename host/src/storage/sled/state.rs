//! Plugin key-value state (the WIT `state` import) in sled, scoped by shop
//! and plugin, with the per-shop quota on what it keeps.

use super::SledStorage;
use super::keys::{shop_prefix, state_key};
use crate::state::{StateError, StateScope, StateStore};

impl SledStorage {
    /// Cap the plugin state (keys + values) each shop may keep.
    pub fn with_state_quota(mut self, bytes: u64) -> Self {
        self.state_quota = bytes;
        self
    }

    /// Add `delta` bytes to a shop's state usage, refusing to pass the
    /// quota. (Two writes of one shop racing may pass it by one value.)
    fn account(&self, shop: &str, delta: i64) -> Result<(), StateError> {
        if self.state_quota == 0 {
            return Ok(());
        }
        let key = shop_prefix(shop);
        let used = self
            .state_usage
            .get(&key)
            .map_err(state_err)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let next = (used as i64 + delta).max(0) as u64;
        if delta > 0 && next > self.state_quota {
            return Err(StateError::QuotaExceeded(format!(
                "shop `{shop}` would keep {next} bytes of plugin state, over its quota of {}",
                self.state_quota
            )));
        }
        self.state_usage
            .insert(key, &next.to_be_bytes())
            .map_err(state_err)?;
        Ok(())
    }
}

fn state_err(e: sled::Error) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl StateStore for SledStorage {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        let value = self.state.get(state_key(scope, key)).map_err(state_err)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        if self.state_quota > 0 {
            let k = state_key(scope, key);
            let old = self
                .state
                .get(&k)
                .map_err(state_err)?
                .map_or(0, |v| (v.len() + key.len()) as i64);
            self.account(&scope.shop, (key.len() + value.len()) as i64 - old)?;
        }
        self.state
            .insert(state_key(scope, key), value.as_bytes())
            .map_err(state_err)?;
        Ok(())
    }

    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        if self.state_quota > 0
            && let Some(old) = self.state.get(state_key(scope, key)).map_err(state_err)?
        {
            self.account(&scope.shop, -((old.len() + key.len()) as i64))?;
        }
        Ok(self
            .state
            .remove(state_key(scope, key))
            .map_err(state_err)?
            .is_some())
    }

    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let base = state_key(scope, "");
        self.state
            .scan_prefix(state_key(scope, prefix))
            .keys()
            .take(limit)
            .map(|k| {
                let k = k.map_err(state_err)?;
                Ok(String::from_utf8_lossy(&k[base.len()..]).into_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    #[test]
    fn state_quota_counts_keys_and_values_per_shop() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap().with_state_quota(100);
        let a = StateScope::new("a", "p");
        let a2 = StateScope::new("a", "q");
        let b = StateScope::new("b", "p");
        store.set(&a, "k1", &"x".repeat(58)).unwrap(); // 60 bytes
        let err = store.set(&a2, "k2", &"x".repeat(58)).unwrap_err();
        assert!(
            matches!(&err, StateError::QuotaExceeded(m) if m.contains("120 bytes")),
            "{err}"
        );
        store.set(&b, "k2", &"x".repeat(58)).unwrap();
        store.set(&a, "k1", "small").unwrap(); // overwrite: 7 bytes now
        store.set(&a2, "k2", &"x".repeat(58)).unwrap();
        assert!(store.delete(&a2, "k2").unwrap());
        store.set(&a2, "k3", &"x".repeat(88)).unwrap(); // 7 + 90 = 97
    }

    #[test]
    fn state_is_scoped_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = StateScope::new("a", "p");
        let b = StateScope::new("b", "p");
        {
            let store = SledStorage::open(dir.path()).unwrap();
            store.set(&a, "k1", "v1").unwrap();
            store.set(&a, "k2", "v2").unwrap();
            store.set(&b, "k1", "other").unwrap();
            Storage::flush(&store).unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(store.get(&a, "k1").unwrap().as_deref(), Some("v1"));
        assert_eq!(store.list_keys(&a, "k", 10).unwrap(), ["k1", "k2"]);
        assert_eq!(store.get(&b, "k2").unwrap(), None);
    }
}
