//! Plugin key-value state (the WIT `state` import) in sled, scoped by shop
//! and plugin, with the per-shop quota on what it keeps.

use super::SledStorage;
use super::keys::{shop_prefix, state_key};
use crate::state::{StateError, StateScope, StateStore};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

impl SledStorage {
    /// Cap the plugin state (keys + values) each shop may keep.
    pub fn with_state_quota(mut self, bytes: u64) -> Self {
        self.state_quota = bytes;
        self
    }

    /// Write (`Some`) or delete (`None`) one state entry and keep the
    /// shop's usage in step, refusing to pass the quota: one transaction,
    /// so two writes of one shop racing cannot both pass it. Returns
    /// whether the key was there.
    fn write_with_quota(
        &self,
        scope: &StateScope,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool, StateError> {
        let k = state_key(scope, key);
        let usage_key = shop_prefix(&scope.shop);
        (&self.state, &self.state_usage)
            .transaction(|(state, usage)| {
                let old = state.get(&k)?;
                let delta = value.map_or(0, |v| (key.len() + v.len()) as i64)
                    - old.as_ref().map_or(0, |v| (key.len() + v.len()) as i64);
                let used = usage
                    .get(&usage_key)?
                    .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(0);
                let next = (used as i64 + delta).max(0) as u64;
                if delta > 0 && next > self.state_quota {
                    return Err(ConflictableTransactionError::Abort(
                        StateError::QuotaExceeded(format!(
                            "shop `{}` would keep {next} bytes of plugin state, over its quota of {}",
                            scope.shop, self.state_quota
                        )),
                    ));
                }
                match value {
                    Some(v) => state.insert(k.as_slice(), v.as_bytes())?,
                    None => state.remove(k.as_slice())?,
                };
                usage.insert(usage_key.as_slice(), &next.to_be_bytes())?;
                Ok(old.is_some())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => state_err(e),
            })
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
            return self.write_with_quota(scope, key, Some(value)).map(|_| ());
        }
        self.state
            .insert(state_key(scope, key), value.as_bytes())
            .map_err(state_err)?;
        Ok(())
    }

    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        if self.state_quota > 0 {
            return self.write_with_quota(scope, key, None);
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
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        use std::ops::Bound;
        let base = state_key(scope, "");
        let first = state_key(scope, prefix);
        let start = match after {
            Some(after) if after >= prefix => Bound::Excluded(state_key(scope, after)),
            _ => Bound::Included(first.clone()),
        };
        self.state
            .range::<Vec<u8>, _>((start, Bound::Unbounded))
            .keys()
            .take_while(|k| k.as_ref().map_or(true, |k| k.starts_with(&first)))
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
    use crate::storage::Durable;

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

    /// Eight writers of one shop at once never keep more than its quota:
    /// the usage is checked and charged in one transaction.
    #[test]
    fn concurrent_writers_of_one_shop_stop_exactly_at_its_quota() {
        let dir = tempfile::tempdir().unwrap();
        let quota = 10_000;
        let store = SledStorage::open(dir.path())
            .unwrap()
            .with_state_quota(quota);
        let kept: u64 = std::thread::scope(|s| {
            let writers: Vec<_> = (0..8)
                .map(|w| {
                    let store = &store;
                    s.spawn(move || {
                        let scope = StateScope::new("shop", format!("plugin-{w}"));
                        (0..100)
                            .filter(|i| {
                                // 8 + 92 = 100 bytes a key.
                                let key = format!("key-{i:04}");
                                store.set(&scope, &key, &"x".repeat(92)).is_ok()
                            })
                            .count() as u64
                            * 100
                    })
                })
                .collect();
            writers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(
            kept, quota,
            "the writes that succeeded fill the quota exactly"
        );
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
            Durable::flush(&store).unwrap();
        }
        // Opening waits out the lock the dropped handle still holds.
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(store.get(&a, "k1").unwrap().as_deref(), Some("v1"));
        assert_eq!(store.list_keys(&a, "k", None, 10).unwrap(), ["k1", "k2"]);
        assert_eq!(store.get(&b, "k2").unwrap(), None);
    }
}
