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

/// Whether `name` is a temporary file of [`write_paced`] whose writer is
/// gone (killed mid-write): the process its name carries is not running,
/// so no rename will ever come. A pid used again since keeps it (safe).
pub fn is_leftover(name: &str) -> bool {
    let Some(rest) = name.rsplit_once(".tmp").map(|(_, rest)| rest) else {
        return false;
    };
    let Some((pid, n)) = rest.split_once('-') else {
        return false;
    };
    let (Ok(pid), Ok(_)) = (pid.parse::<u32>(), n.parse::<u64>()) else {
        return false;
    };
    pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// Delete the temporary files in `folder` that writers killed mid-write
/// left (see [`is_leftover`]); how many.
pub fn sweep_leftovers(folder: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return 0;
    };
    let swept = entries
        .flatten()
        .filter(|e| is_leftover(&e.file_name().to_string_lossy()))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count();
    if swept > 0 {
        tracing::info!(swept, folder = %folder.display(), "files left half written by a process that stopped deleted");
    }
    swept
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
    fn only_the_temporary_files_of_writers_gone_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        // pid_max is at most 4,194,304: this writer never ran here.
        let gone = ["a.tmp999999999-0", "abc-fp.tmp999999998-17"];
        let kept = [
            format!("a.tmp{me}-3"), // a write of this process, running
            "b.tmp1-0".to_string(), // pid 1 is running
            "c.wasm".to_string(),   // a finished file
            "d.tmpx-1".to_string(), // not a temporary file's name
            "e.tmp999999999".to_string(),
        ];
        for name in gone
            .iter()
            .map(|n| n.to_string())
            .chain(kept.iter().cloned())
        {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        assert_eq!(sweep_leftovers(dir.path()), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut want = kept.to_vec();
        want.sort();
        assert_eq!(left, want);
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
