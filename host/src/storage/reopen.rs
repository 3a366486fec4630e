//! The server's store, opened again when it cannot go on: sled 0.34
//! keeps answering the error of a failed log write (a full disk, a device
//! that failed) to every later call until it is opened again. Opening it
//! again is what a restart does — recovery from its log, which holds
//! every flushed write — without the restart: calls made meanwhile fail
//! fast with [`StorageError::Failing`].

use super::layer::{Layer, Layered};
use super::{Storage, StorageError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a reopen waits for the calls still running in the old store
/// (a replay's scan, a flush) before it gives up for now.
const DRAIN: Duration = Duration::from_secs(5);
/// How long a reopen waits for the old store's threads to let go of its
/// lock.
const UNLOCK: Duration = Duration::from_secs(2);

type Open = dyn Fn() -> Result<Arc<dyn Storage>, StorageError> + Send + Sync;

/// A store that [`Layer::reopen`] opens again with the function it was
/// made with.
pub struct Reopening {
    /// The open store; none while it is being reopened, or when opening
    /// it again failed (tried again at the next reopen).
    current: RwLock<Option<Arc<dyn Storage>>>,
    open: Box<Open>,
    /// Serializes reopens.
    reopening: std::sync::Mutex<()>,
    /// Why the last reopen failed (said once, not at every try).
    last_error: std::sync::Mutex<Option<String>>,
}

impl Reopening {
    /// Open the store with `open`, which opens it again when asked.
    pub fn open(
        open: impl Fn() -> Result<Arc<dyn Storage>, StorageError> + Send + Sync + 'static,
    ) -> Result<Layered<Reopening>, StorageError> {
        let store = open()?;
        Ok(Layered(Reopening {
            current: RwLock::new(Some(store)),
            open: Box::new(open),
            reopening: Default::default(),
            last_error: Default::default(),
        }))
    }

    fn slot(&self) -> std::sync::RwLockWriteGuard<'_, Option<Arc<dyn Storage>>> {
        self.current.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Layer for Reopening {
    fn store(&self) -> Result<Arc<dyn Storage>, StorageError> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                StorageError::Failing("the store is being opened again after a failure".into())
            })
    }

    /// Close the store (once the calls running in it are done) and open it
    /// again. When they do not finish within [`DRAIN`] the old store stays
    /// and the error says so; when opening fails, calls fail fast until a
    /// later reopen succeeds.
    fn reopen(&self) -> Result<bool, StorageError> {
        let _one = self.reopening.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.slot().take();
        if let Some(old) = old {
            let started = Instant::now();
            while Arc::strong_count(&old) > 1 {
                if started.elapsed() > DRAIN {
                    *self.slot() = Some(old);
                    return Err(StorageError::Failing(format!(
                        "calls still running in the store after {DRAIN:?}: not reopened yet"
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // Closing flushes what sled still holds, which may wait on
            // the failed log: on a thread of its own.
            let _ = std::thread::Builder::new()
                .name("kefu-close".into())
                .spawn(move || drop(old));
        }
        let started = Instant::now();
        loop {
            match (self.open)() {
                Ok(store) => {
                    *self.slot() = Some(store);
                    *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    metrics::counter!("kefu_storage_reopens_total").increment(1);
                    tracing::warn!("storage opened again after a failure");
                    return Ok(true);
                }
                // The old store's threads let go of its lock soon after
                // it is dropped, not at once.
                Err(StorageError::Locked(_)) if started.elapsed() < UNLOCK => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    let said = e.to_string();
                    let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
                    if last.as_deref() != Some(said.as_str()) {
                        tracing::error!(error = %said, "storage cannot be opened again yet");
                        *last = Some(said);
                    }
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        Actor, AuditAction, AuditEvent, AuditLog, Durable, SledStorage, VersionSource,
    };

    fn event(id: u64, shop: &str) -> AuditEvent {
        AuditEvent {
            id,
            at_ms: id as i64,
            shop: shop.into(),
            step: None,
            action: AuditAction::SignedIn,
            version: None,
            digest: None,
            source: VersionSource::None,
            actor: Actor::Admin,
            reason: String::new(),
        }
    }

    /// #30: opened again, the store has everything flushed before and
    /// takes writes; a call still running in it holds the reopen back.
    #[test]
    fn a_reopened_store_keeps_what_was_flushed_and_writes_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let store =
            Reopening::open(move || Ok(Arc::new(SledStorage::open(&path)?) as Arc<dyn Storage>))
                .unwrap();
        store.append_audit(&event(1, "before")).unwrap();
        store.flush().unwrap();
        assert!(store.reopen().unwrap());
        store.append_audit(&event(2, "after")).unwrap();
        store.flush().unwrap();
        let shops: Vec<String> = store
            .audit(None, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.shop)
            .collect();
        assert_eq!(shops, ["after", "before"]);
        // A call running in the old store: the reopen waits, then leaves
        // the store as it was and says so.
        let held = store.store().unwrap();
        let e = store.reopen().unwrap_err();
        assert!(e.to_string().contains("still running"), "{e}");
        drop(held);
        assert_eq!(store.audit(None, 10).unwrap().len(), 2);
    }
}
