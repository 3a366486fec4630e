//! Component bytes, kept apart from everything else in a sled store of
//! their own under `<data>/components`.
//!
//! Why apart: sled cleans its log as it writes, on the writing thread. A
//! component of a few hundred KiB (or MiB) makes its tree node too big for
//! the log, so each time the cleaner moved that node it wrote the whole
//! node out again as a separate file, and did so inside whichever
//! decision-log insert triggered the cleaning: single requests stalled for
//! 20-100 ms. In their own store, components are only touched by deploys.

use super::keys::backend;
use crate::storage::StorageError;
use std::path::Path;

/// The folder, inside the main store's, that holds the components.
const FOLDER: &str = "components";

pub(super) struct Components {
    db: sled::Db,
}

impl Components {
    /// Open the component store in `dir`, moving in any components that
    /// an earlier build kept in the main store's `old` tree (and dropping
    /// that tree once they are safely copied).
    pub(super) fn open(dir: &Path, main: &sled::Db, old: &str) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir.join(FOLDER))
            // Components are read at deploys and rollbacks, not per call.
            .cache_capacity(8 << 20)
            .open()
            .map_err(backend)?;
        let components = Components { db };
        if main
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == old.as_bytes())
        {
            let tree = main.open_tree(old).map_err(backend)?;
            for item in tree.iter() {
                let (digest, bytes) = item.map_err(backend)?;
                components.db.insert(digest, bytes).map_err(backend)?;
            }
            components.flush()?;
            main.drop_tree(old).map_err(backend)?;
        }
        Ok(components)
    }

    /// Keep a component, durably before this returns: deploys are rare,
    /// so the group commit of every answer need not flush this store too.
    pub(super) fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        if !self.db.contains_key(digest).map_err(backend)? {
            self.db.insert(digest, bytes).map_err(backend)?;
            self.flush()?;
        }
        Ok(())
    }

    pub(super) fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.db.get(digest).map_err(backend)?.map(|v| v.to_vec()))
    }

    /// Forget a component, durably before this returns.
    pub(super) fn remove(&self, digest: &str) -> Result<(), StorageError> {
        if self.db.remove(digest).map_err(backend)?.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        self.db.flush().map(|_| ()).map_err(backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;
    use crate::storage::{Durable, VersionStore};

    #[test]
    fn components_of_an_older_store_move_to_their_own() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let old = db.open_tree("blobs").unwrap();
            old.insert("digest-1", vec![7u8; 300 << 10]).unwrap();
            db.flush().unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(
            store.component("digest-1").unwrap(),
            Some(vec![7u8; 300 << 10])
        );
        assert!(dir.path().join(FOLDER).is_dir());
        drop(store);
        // The main store no longer has them; the component store does,
        // across a restart.
        let db = sled::open(dir.path()).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"blobs"));
        drop(db);
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(
            store.component("digest-1").unwrap().map(|b| b.len()),
            Some(300 << 10)
        );
    }

    #[test]
    fn the_decision_log_does_not_share_a_store_with_components() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        store.put_component("d", &[1, 2, 3]).unwrap();
        store.flush().unwrap();
        assert!(
            !store.db.tree_names().iter().any(|n| n.as_ref() == b"blobs"),
            "components must stay out of the main store"
        );
        assert_eq!(store.component("d").unwrap(), Some(vec![1, 2, 3]));
    }
}
