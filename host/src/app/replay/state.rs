//! Plugin state as a call saw it: recorded on every live call (the value
//! of each key it read before writing it, and each page of keys it
//! listed), and served back to a replay, whose writes go to a throwaway
//! overlay and never reach the shop's state.

use crate::state::{StateError, StateScope, StateStore};
use crate::storage::StateRead;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A live call's state: the shop's store, with what the call read noted.
pub struct Recorder {
    inner: Arc<dyn StateStore>,
    log: Mutex<Noted>,
}

#[derive(Default)]
struct Noted {
    reads: Vec<StateRead>,
    /// Keys read or written already: a later read is the call's own doing.
    known: HashSet<String>,
}

impl Recorder {
    pub fn new(inner: Arc<dyn StateStore>) -> Self {
        Recorder {
            inner,
            log: Mutex::new(Noted::default()),
        }
    }

    /// What the call read, in order.
    pub fn take(&self) -> Vec<StateRead> {
        std::mem::take(&mut self.log.lock().unwrap_or_else(|e| e.into_inner()).reads)
    }

    fn note(&self, f: impl FnOnce(&mut Noted)) {
        f(&mut self.log.lock().unwrap_or_else(|e| e.into_inner()));
    }
}

impl StateStore for Recorder {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        let value = self.inner.get(scope, key)?;
        self.note(|n| {
            if n.known.insert(key.to_string()) {
                n.reads.push(StateRead::Get {
                    key: key.to_string(),
                    value: value.clone(),
                });
            }
        });
        Ok(value)
    }

    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        self.note(|n| {
            n.known.insert(key.to_string());
        });
        self.inner.set(scope, key, value)
    }

    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        self.note(|n| {
            n.known.insert(key.to_string());
        });
        self.inner.delete(scope, key)
    }

    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let keys = self.inner.list_keys(scope, prefix, after, limit)?;
        self.note(|n| {
            n.reads.push(StateRead::List {
                prefix: prefix.to_string(),
                after: after.map(str::to_string),
                keys: keys.clone(),
            })
        });
        Ok(keys)
    }
}

/// A replayed call's state: the recorded reads, under the call's own
/// writes (kept here, thrown away after).
#[derive(Default)]
pub struct Replayed {
    reads: HashMap<String, Option<String>>,
    lists: Vec<(String, Option<String>, Vec<String>)>,
    overlay: Mutex<BTreeMap<String, Option<String>>>,
    /// Reads of keys the recorded call never read (served as absent).
    pub unrecorded: AtomicU64,
}

impl Replayed {
    pub fn new(recorded: &[StateRead]) -> Self {
        let mut replayed = Replayed::default();
        for read in recorded {
            match read {
                StateRead::Get { key, value } => {
                    replayed.reads.insert(key.clone(), value.clone());
                }
                StateRead::List {
                    prefix,
                    after,
                    keys,
                } => replayed
                    .lists
                    .push((prefix.clone(), after.clone(), keys.clone())),
            }
        }
        replayed
    }

    fn overlay(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        self.overlay.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl StateStore for Replayed {
    fn get(&self, _: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        if let Some(written) = self.overlay().get(key) {
            return Ok(written.clone());
        }
        match self.reads.get(key) {
            Some(value) => Ok(value.clone()),
            None => {
                self.unrecorded.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    fn set(&self, _: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        self.overlay()
            .insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        let existed = self.get(scope, key)?.is_some();
        self.overlay().insert(key.to_string(), None);
        Ok(existed)
    }

    fn list_keys(
        &self,
        _: &StateScope,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let recorded = self
            .lists
            .iter()
            .find(|(p, a, _)| p == prefix && a.as_deref() == after);
        match recorded {
            Some((_, _, keys)) => Ok(keys.iter().take(limit).cloned().collect()),
            None => {
                self.unrecorded.fetch_add(1, Ordering::Relaxed);
                let overlay = self.overlay();
                let mut keys: Vec<String> = self
                    .reads
                    .iter()
                    .filter(|(_, v)| v.is_some())
                    .map(|(k, _)| k)
                    .chain(overlay.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k))
                    .filter(|k| k.starts_with(prefix) && after.is_none_or(|a| k.as_str() > a))
                    .cloned()
                    .collect();
                keys.sort();
                keys.dedup();
                keys.truncate(limit);
                Ok(keys)
            }
        }
    }
}
