//! A store that fails on purpose: tests and drills arm faults (a write,
//! a flush or a read of one kind of record fails) to see what the server
//! does when its storage fails there, and disarm them to see it recover.

use super::layer::{Layer, Layered, Op, Record};
use super::{Storage, StorageError};
use std::sync::{Arc, Mutex};

/// A store in front of `store` whose armed faults fail the calls they
/// match with a storage error naming the fault, before the store sees
/// them (so a failed write wrote nothing).
pub struct Faults {
    store: Arc<dyn Storage>,
    /// (record, op) pairs whose calls fail.
    armed: Mutex<Vec<(Record, Op)>>,
    /// Calls failed so far.
    failed: std::sync::atomic::AtomicU64,
}

impl Faults {
    pub fn new(store: Arc<dyn Storage>) -> Layered<Faults> {
        Layered(Faults {
            store,
            armed: Default::default(),
            failed: Default::default(),
        })
    }

    /// Fail every `op` of `record` (a flush: [`Record::Store`] with
    /// [`Op::Flush`]) until cleared.
    pub fn arm(&self, record: Record, op: Op) {
        self.armed.lock().unwrap().push((record, op));
    }

    /// Disarm every fault.
    pub fn clear(&self) {
        self.armed.lock().unwrap().clear();
    }

    /// Calls failed so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Layer for Faults {
    fn store(&self) -> Result<Arc<dyn Storage>, StorageError> {
        Ok(self.store.clone())
    }

    fn check(&self, record: Record, op: Op) -> Result<(), StorageError> {
        if !self.armed.lock().unwrap().contains(&(record, op)) {
            return Ok(());
        }
        self.failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Err(StorageError::Backend(format!(
            "injected fault: {op} of {record} failed"
        )))
    }
}
