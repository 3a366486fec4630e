//! Component bytes, one file each under `<data>/component-files`, apart
//! from sled.
//!
//! Why apart from the decision log's store: sled cleans its log as it
//! writes, on the writing thread, and a component's node made each
//! cleaning write it out again inside whichever decision-log insert
//! triggered it (single requests stalled for 20-100 ms). Why files, not a
//! sled store of their own: sled wrote a component (12-35 MB for Python or
//! JavaScript) in one burst and fsynced it, and the decision log's next
//! fsync waited behind it. A file is written paced ([`crate::files`]),
//! each slice on the disk before the next, then synced.

use super::keys::backend;
use crate::files::{Keep, sync_folder, write_paced};
use crate::storage::StorageError;
use std::path::{Path, PathBuf};

/// The folder, inside the store's, that holds the components.
const FOLDER: &str = "component-files";
/// Where an earlier build kept them: a sled store of their own.
const OLD_STORE: &str = "components";

pub(super) struct Components {
    dir: PathBuf,
}

impl Components {
    /// The components in `dir`, moving in any that an earlier build kept
    /// in a sled store of their own or in the main store's `old` tree
    /// (and dropping those once the files are safely written).
    pub(super) fn open(dir: &Path, main: &sled::Db, old: &str) -> Result<Self, StorageError> {
        let components = Components {
            dir: dir.join(FOLDER),
        };
        std::fs::create_dir_all(&components.dir).map_err(|e| io(&components.dir, e))?;
        // A deploy killed while it wrote its component left a part.
        crate::files::sweep_leftovers(&components.dir);
        let old_store = dir.join(OLD_STORE);
        if old_store.join("db").is_file() {
            let db = sled::Config::new()
                .path(&old_store)
                .open()
                .map_err(backend)?;
            components.move_in(&db)?;
            drop(db);
            std::fs::remove_dir_all(&old_store).map_err(|e| io(&old_store, e))?;
        }
        if main
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == old.as_bytes())
        {
            components.move_in(&main.open_tree(old).map_err(backend)?)?;
            main.drop_tree(old).map_err(backend)?;
        }
        Ok(components)
    }

    /// Write every component of an earlier build's `tree` as a file.
    fn move_in(&self, tree: &sled::Tree) -> Result<(), StorageError> {
        for item in tree.iter() {
            let (digest, bytes) = item.map_err(backend)?;
            self.put(&String::from_utf8_lossy(&digest), &bytes)?;
        }
        Ok(())
    }

    /// Keep a component, durably before this returns.
    pub(super) fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.path(digest);
        if !path.is_file() {
            write_paced(&path, bytes, Keep::Durable).map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    pub(super) fn get(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(digest);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// Forget a component, durably before this returns.
    pub(super) fn remove(&self, digest: &str) -> Result<(), StorageError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_folder(&path).map_err(|e| io(&path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    /// A digest's file: the digest itself when it is a plain name (kefu's
    /// are hex), else its hex, so no digest can name a path elsewhere.
    fn path(&self, digest: &str) -> PathBuf {
        let plain = !digest.is_empty()
            && digest.len() <= 128
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let name = if plain {
            format!("{digest}.wasm")
        } else {
            format!("x{}.wasm", hex::encode(digest))
        };
        self.dir.join(name)
    }
}

fn io(path: &Path, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("{}: {e}", path.display()))
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
    fn components_of_their_own_sled_store_move_to_files() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join(OLD_STORE)).unwrap();
            db.insert("digest-2", vec![9u8; 2 << 20]).unwrap();
            db.flush().unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(
            store.component("digest-2").unwrap(),
            Some(vec![9u8; 2 << 20])
        );
        assert!(
            !dir.path().join(OLD_STORE).exists(),
            "the old store is gone"
        );
        assert!(dir.path().join(FOLDER).join("digest-2.wasm").is_file());
        drop(store);
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(
            store.component("digest-2").unwrap().map(|b| b.len()),
            Some(2 << 20)
        );
    }

    #[test]
    fn a_component_half_written_by_a_killed_process_is_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(FOLDER);
        std::fs::create_dir_all(&folder).unwrap();
        // As `write_paced` names its temporary file; this pid never ran.
        let part = folder.join("abc.tmp999999999-4");
        std::fs::write(&part, vec![1u8; 4096]).unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        assert!(!part.exists(), "the part is gone");
        store.put_component("abc", b"whole").unwrap();
        assert_eq!(
            store.component("abc").unwrap().as_deref(),
            Some(&b"whole"[..])
        );
    }

    #[test]
    fn a_digest_names_a_file_in_the_folder_and_nowhere_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        for digest in ["../escape", "a/b", ".hidden", ""] {
            store.put_component(digest, b"bytes").unwrap();
            assert_eq!(
                store.component(digest).unwrap().as_deref(),
                Some(&b"bytes"[..])
            );
            store.remove_component(digest).unwrap();
            assert_eq!(store.component(digest).unwrap(), None);
        }
        assert!(!dir.path().join("escape").exists());
        assert_eq!(store.component("never").unwrap(), None);
        store.remove_component("never").unwrap();
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
