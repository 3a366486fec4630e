//! Compiled functions on disk, by Cranelift's key for each: a component
//! that shares most of its code with one compiled before (every Python
//! plugin carries the same interpreter, every JavaScript one the same
//! engine) compiles only what is new.
//!
//! Cranelift keys an entry by a SHA-256 of the function's IR and the
//! compiler's settings, and checks its own version when it reads one back
//! (an entry of another version is a miss). Entries are written by kefu's
//! own compiles only, never taken from a client; a lost or damaged entry
//! is compiled again.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// An entry read after this long since it was written or last marked is
/// marked again, so that a sweep keeps what compiles still read.
const MARK_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A directory of compiled functions, one file each, in 256 folders.
#[derive(Debug)]
pub struct FunctionCache {
    dir: PathBuf,
    hits: AtomicU64,
    stored: AtomicU64,
}

impl FunctionCache {
    /// The cache in `dir` (made when the first entry is stored).
    pub fn new(dir: PathBuf) -> Self {
        FunctionCache {
            dir,
            hits: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        }
    }

    /// Functions found here and functions compiled and stored, so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.stored.load(Ordering::Relaxed),
        )
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = hex::encode(key);
        self.dir.join(&name[..2.min(name.len())]).join(&name)
    }

    /// Delete entries neither written nor read for `unused_for`; how many.
    pub fn sweep(&self, unused_for: Duration) -> usize {
        let Ok(folders) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut deleted = 0;
        for folder in folders.flatten() {
            let Ok(entries) = std::fs::read_dir(folder.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if untouched_for(entry.metadata(), unused_for)
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    deleted += 1;
                }
            }
        }
        if deleted > 0 {
            tracing::info!(deleted, dir = %self.dir.display(), "unused compiled functions deleted");
        }
        deleted
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        use std::io::Read;
        let mut file = std::fs::File::open(self.path(key)).ok()?;
        if untouched_for(file.metadata(), MARK_AFTER) {
            let _ = file.set_modified(SystemTime::now());
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ok()?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(Cow::Owned(bytes))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        let Some(folder) = path.parent() else {
            return false;
        };
        if std::fs::create_dir_all(folder).is_err() {
            return false;
        }
        // Written whole under another name, then renamed: a reader never
        // sees half an entry, and two compiles writing one key both win.
        let tmp = folder.join(format!(
            ".{}.{}.tmp",
            std::process::id(),
            self.stored.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_now(&tmp, &value).and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            self.stored.fetch_sub(1, Ordering::Relaxed);
        }
        written.is_ok()
    }
}

/// Whether a file (its metadata) was last modified at least `age` ago.
pub(super) fn untouched_for(metadata: std::io::Result<std::fs::Metadata>, age: Duration) -> bool {
    metadata
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed >= age)
}

/// Write a file and start its write-back at once: a first compile stores
/// thousands of entries, and left to the kernel they would reach the disk
/// in one burst that the decision log's next fsync waits behind.
fn write_now(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain system call on a file this function owns; a
        // failure only leaves the write-back to the kernel.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::CacheStore;

    #[test]
    fn an_entry_reads_back_and_a_missing_one_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(dir.path().join("functions"));
        assert!(cache.get(&[1, 2, 3]).is_none());
        assert!(cache.insert(&[1, 2, 3], b"code".to_vec()));
        assert_eq!(cache.get(&[1, 2, 3]).as_deref(), Some(&b"code"[..]));
        assert!(cache.get(&[1, 2, 4]).is_none());
        assert_eq!(cache.counts(), (1, 1));
        // Nothing half-written is left beside the entries.
        let folder = dir.path().join("functions").join("01");
        let names: Vec<_> = std::fs::read_dir(folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["010203".to_string()]);
    }

    #[test]
    fn a_sweep_deletes_only_what_was_unused_for_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FunctionCache::new(dir.path().join("functions"));
        cache.insert(&[1], b"old".to_vec());
        cache.insert(&[2], b"new".to_vec());
        let old = std::fs::File::options()
            .write(true)
            .open(cache.path(&[1]))
            .unwrap();
        old.set_modified(SystemTime::now() - Duration::from_secs(3 * 24 * 3600))
            .unwrap();
        assert_eq!(cache.sweep(Duration::from_secs(2 * 24 * 3600)), 1);
        assert!(cache.get(&[1]).is_none());
        assert!(cache.get(&[2]).is_some());
    }
}
