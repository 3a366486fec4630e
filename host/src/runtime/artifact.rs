//! Compiled artifacts on disk: written a slice at a time, each slice on
//! the disk before the next, so that a deploy's tens of megabytes (a
//! Python component compiles to ~35 MB) never queue ahead of the decision
//! log's fsync; read back into the engine, checked.
//!
//! Written whole, such a file sits in the page cache until the kernel
//! writes it back in one burst, and the next fsync of the decision log
//! (ext4 commits in order) waits behind it: 80-240 ms answers beside a
//! deploy (docs/perf-history.md).

use std::io::Write;
use std::path::Path;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Bytes written, then waited on to reach the disk, at a time.
const SLICE: usize = 1 << 20;

/// Write `bytes` to `path` through a temporary file and a rename (a
/// reader never sees half a file), [`SLICE`] bytes on the disk at a time.
/// Not fsynced as a whole: a cache, lost only to a crash, then recompiled.
pub fn write_paced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        let mut offset = 0;
        for slice in bytes.chunks(SLICE) {
            file.write_all(slice)?;
            wait_written(&file, offset, slice.len());
            offset += slice.len();
        }
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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

/// Write a compiled component's artifact; failures only cost a recompile
/// later, so they are logged, not returned.
pub fn store(component: &Component, path: &Path) {
    let result = component
        .serialize()
        .map_err(|e| e.to_string())
        .and_then(|bytes| write_paced(path, &bytes).map_err(|e| e.to_string()));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write compiled artifact");
    }
}

/// A cached artifact, or `None` when it is missing or unusable (then the
/// caller recompiles and overwrites it).
pub fn load(engine: &Engine, path: &Path) -> Option<Component> {
    // Read, not mmap: a cache file truncated by someone else must not be
    // able to crash the host with SIGBUS.
    let bytes = std::fs::read(path).ok()?;
    // SAFETY: artifacts are only ever written by kefu (`store`, or a
    // compile worker of this executable) into the host's own cache
    // directory, named by the digest of the source and the engine's
    // compatibility fingerprint; wasmtime still checks the header.
    match unsafe { Component::deserialize(engine, &bytes) } {
        Ok(component) => {
            // Its time of last use, for `CompileCache::sweep`.
            if let Ok(file) = std::fs::File::options().write(true).open(path) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            Some(component)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled artifact");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_write_is_whole_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.cwasm");
        let bytes: Vec<u8> = (0..(3 * SLICE + 123)).map(|i| (i % 251) as u8).collect();
        write_paced(&path, &bytes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        // Over an older one, too.
        write_paced(&path, b"short").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"short");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
