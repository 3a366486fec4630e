//! Big files written a slice at a time, each slice on the disk before the
//! next, so that tens of megabytes (a deploy's component, its compiled
//! artifact) never queue ahead of the decision log's fsync.
//!
//! Written whole, such a file sits in the page cache until the kernel
//! writes it back in one burst (or an fsync does), and the next fsync of
//! the decision log waits behind it (ext4 commits in order): 80-240 ms
//! answers beside a deploy (docs/perf-history.md).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes written, then waited on to reach the disk, at a time.
const SLICE: usize = 1 << 20;

/// How far a finished file is made to last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Its data written back, nothing synced: a cache, lost only to a
    /// crash (then made again).
    Cache,
    /// Synced with its folder before this returns: a record.
    Durable,
}

/// Write `bytes` to `path` through a temporary file and a rename (a
/// reader never sees half a file), [`SLICE`] bytes on the disk at a time.
/// Two writers of one path (one component deployed to two shops at once)
/// each write a temporary file of their own: the last rename wins, whole.
pub fn write_paced(path: &Path, bytes: &[u8], keep: Keep) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = path.with_extension(format!(
        "tmp{}-{}",
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        let mut offset = 0;
        for slice in bytes.chunks(SLICE) {
            file.write_all(slice)?;
            wait_written(&file, offset, slice.len());
            offset += slice.len();
        }
        if keep == Keep::Durable {
            // The data is on the disk already: this commits the metadata.
            file.sync_all()?;
        }
        drop(file);
        std::fs::rename(&tmp, path)?;
        if keep == Keep::Durable {
            sync_folder(path)?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Make a rename or removal in `path`'s folder durable.
pub fn sync_folder(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(folder) => std::fs::File::open(folder)?.sync_all(),
        None => Ok(()),
    }
}

/// Start writing back `len` bytes at `offset` and wait until they are on
/// the disk (the data only: no journal commit, no metadata).
#[cfg(target_os = "linux")]
fn wait_written(file: &std::fs::File, offset: usize, len: usize) {
    use std::os::fd::AsRawFd;
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: a plain system call on a file this function owns the handle
    // of; a failure only means the slice is written back later.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, flags);
    }
}

#[cfg(not(target_os = "linux"))]
fn wait_written(_file: &std::fs::File, _offset: usize, _len: usize) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_write_is_whole_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        let bytes: Vec<u8> = (0..(3 * SLICE + 123)).map(|i| (i % 251) as u8).collect();
        for keep in [Keep::Cache, Keep::Durable] {
            write_paced(&path, &bytes, keep).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
            // Over an older one, too.
            write_paced(&path, b"short", keep).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"short");
            let names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 1, "{names:?}");
        }
    }

    #[test]
    fn writers_of_one_path_at_once_leave_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("same.wasm");
        let bytes: Vec<u8> = (0..(2 * SLICE + 5)).map(|i| (i % 253) as u8).collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| write_paced(&path, &bytes, Keep::Durable).unwrap());
            }
        });
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
