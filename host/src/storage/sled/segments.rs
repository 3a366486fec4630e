//! The decision log's bodies in append-only segment files under
//! `<data>/decision-log`, beside sled: sled keeps each decision's keys and
//! a [`Pointer`] (a few dozen bytes), the body is one frame appended here.
//!
//! Why: sled 0.34 rewrites a tree's pages as it grows, so every byte of a
//! kilobyte-sized entry was copied several times, and it never gives disk
//! back: pruning a whole log left the store at its size. Here a body is
//! written once, and retention deletes whole segments whose newest entry
//! it pruned.
//!
//! A frame is `len u32 | crc32 u32 | at_ms i64 | body`, little-endian. A
//! body is written to the file (one `pwrite`) before its pointer goes into
//! sled, so a killed process never leaves a pointer without its body;
//! [`Segments::sync`] makes the files durable and runs before sled's flush
//! in the group commit. Each open starts a new segment (so a torn tail is
//! never appended to), created with its first frame; a segment rolls at a
//! size or an age. Each closed segment's newest time is kept in a small
//! `N.newest` file beside it, for retention.

use crate::storage::StorageError;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// The folder, inside the store's, that holds the segments.
const FOLDER: &str = "decision-log";
/// A segment rolls past this size...
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// ...or this age, so that retention can free a quiet log too.
const SEGMENT_AGE: Duration = Duration::from_secs(6 * 3600);
const HEADER: usize = 16;
/// Space is given to a segment this much at a time, ahead of its writes:
/// an append then never grows the file, which on ext4 would wait on the
/// journal's commit (a flush in progress) on the thread answering.
const GROW: u64 = 1 << 20;

/// Where a body is: segment, offset of its frame, body length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Pointer {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

impl Pointer {
    pub(super) const BYTES: usize = 16;

    pub(super) fn to_bytes(self) -> [u8; Self::BYTES] {
        let mut b = [0; Self::BYTES];
        b[..4].copy_from_slice(&self.segment.to_be_bytes());
        b[4..12].copy_from_slice(&self.offset.to_be_bytes());
        b[12..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub(super) fn from_bytes(b: &[u8]) -> Option<Self> {
        Some(Pointer {
            segment: u32::from_be_bytes(b.get(..4)?.try_into().ok()?),
            offset: u64::from_be_bytes(b.get(4..12)?.try_into().ok()?),
            len: u32::from_be_bytes(b.get(12..16)?.try_into().ok()?),
        })
    }
}

struct Writer {
    /// The segment appended to; its file is made with the first frame.
    segment: u32,
    file: Option<Arc<File>>,
    len: u64,
    /// Bytes given to the file so far (zeros past `len`).
    allocated: u64,
    newest: i64,
    opened: Instant,
    /// Files written since the last sync (the current one, and any that
    /// rolled in between).
    unsynced: Vec<Arc<File>>,
}

pub(super) struct Segments {
    dir: PathBuf,
    max_bytes: u64,
    writer: Mutex<Writer>,
    readers: RwLock<HashMap<u32, Arc<File>>>,
}

fn io(what: &str, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("decision log: {what}: {e}"))
}

/// Give `file` the bytes `[from, from + len)` (as zeros), its size too.
fn grow(file: &File, from: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(from), Ok(len)) = (libc::off_t::try_from(from), libc::off_t::try_from(len)) else {
        return Err(std::io::Error::other("segment too large"));
    };
    // SAFETY: a plain system call on a file descriptor this `File` owns.
    match unsafe { libc::fallocate(file.as_raw_fd(), 0, from, len) } {
        0 => Ok(()),
        _ => {
            let e = std::io::Error::last_os_error();
            // Filesystems without fallocate: grow the size alone.
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                file.set_len((from + len) as u64)
            } else {
                Err(e)
            }
        }
    }
}

fn segment_name(segment: u32) -> String {
    format!("{segment:010}.seg")
}

fn newest_name(segment: u32) -> String {
    format!("{segment:010}.newest")
}

impl Segments {
    /// Open the segments in `dir`'s folder (made with the first append);
    /// appends go to a new segment after the last.
    pub(super) fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with(dir, SEGMENT_BYTES)
    }

    pub(super) fn open_with(dir: &Path, max_bytes: u64) -> Result<Self, StorageError> {
        let dir = dir.join(FOLDER);
        let last = Self::list(&dir)?.into_iter().max();
        Ok(Segments {
            writer: Mutex::new(Writer {
                segment: last.map_or(1, |s| s + 1),
                file: None,
                len: 0,
                allocated: 0,
                newest: i64::MIN,
                opened: Instant::now(),
                unsynced: Vec::new(),
            }),
            dir,
            max_bytes,
            readers: RwLock::new(HashMap::new()),
        })
    }

    /// The segments there are, by number.
    fn list(dir: &Path) -> Result<Vec<u32>, StorageError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            entries => entries.map_err(|e| io("cannot list its folder", e))?,
        };
        for entry in entries {
            let name = entry
                .map_err(|e| io("cannot list its folder", e))?
                .file_name();
            if let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse().ok())
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Append `body`, of a decision made at `at_ms`: in the file (not yet
    /// durable) when this returns.
    pub(super) fn append(&self, at_ms: i64, body: &[u8]) -> Result<Pointer, StorageError> {
        let len = u32::try_from(body.len())
            .map_err(|_| StorageError::Backend("decision log: entry over 4 GiB".into()))?;
        let mut frame = Vec::with_capacity(HEADER + body.len());
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        frame.extend_from_slice(&at_ms.to_le_bytes());
        frame.extend_from_slice(body);
        let mut w = self.writer();
        if w.file.is_some()
            && (w.len + frame.len() as u64 > self.max_bytes || w.opened.elapsed() > SEGMENT_AGE)
        {
            self.roll(&mut w)?;
        }
        let file = match &w.file {
            Some(f) => f.clone(),
            None => {
                std::fs::create_dir_all(&self.dir).map_err(|e| io("cannot make its folder", e))?;
                let f = Arc::new(
                    OpenOptions::new()
                        .create(true)
                        .truncate(false)
                        .read(true)
                        .write(true)
                        .open(self.dir.join(segment_name(w.segment)))
                        .map_err(|e| io("cannot make a segment", e))?,
                );
                w.len = 0;
                w.allocated = 0;
                w.opened = Instant::now();
                w.file = Some(f.clone());
                f
            }
        };
        let offset = w.len;
        let end = offset + frame.len() as u64;
        if end > w.allocated {
            let chunk = GROW.min(self.max_bytes).max(4096);
            let more = (end - w.allocated).div_ceil(chunk) * chunk;
            grow(&file, w.allocated, more).map_err(|e| io("cannot grow a segment", e))?;
            w.allocated += more;
        }
        file.write_all_at(&frame, offset)
            .map_err(|e| io("cannot append", e))?;
        w.len += frame.len() as u64;
        w.newest = w.newest.max(at_ms);
        if !w.unsynced.iter().any(|f| Arc::ptr_eq(f, &file)) {
            w.unsynced.push(file);
        }
        Ok(Pointer {
            segment: w.segment,
            offset,
            len,
        })
    }

    /// Close the current segment (keeping its newest time beside it) and
    /// go on in the next.
    fn roll(&self, w: &mut Writer) -> Result<(), StorageError> {
        std::fs::write(self.dir.join(newest_name(w.segment)), w.newest.to_string())
            .map_err(|e| io("cannot close a segment", e))?;
        w.segment += 1;
        w.file = None;
        w.len = 0;
        w.allocated = 0;
        w.newest = i64::MIN;
        Ok(())
    }

    /// Make every append so far durable.
    pub(super) fn sync(&self) -> Result<(), StorageError> {
        let files = std::mem::take(&mut self.writer().unsynced);
        for (i, f) in files.iter().enumerate() {
            if let Err(e) = f.sync_data() {
                // Still to sync at the next try.
                let mut w = self.writer();
                for f in &files[i..] {
                    if !w.unsynced.iter().any(|u| Arc::ptr_eq(u, f)) {
                        w.unsynced.push(f.clone());
                    }
                }
                return Err(io("cannot sync", e));
            }
        }
        Ok(())
    }

    /// The body a pointer names, checked against its frame; none when it
    /// is not there whole (a write a crash cut short, never acknowledged:
    /// its pointer may have reached sled without it).
    pub(super) fn read(&self, p: Pointer) -> Result<Option<Vec<u8>>, StorageError> {
        let file = match self.reader(p.segment) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot open a segment", e)),
        };
        let mut frame = vec![0; HEADER + p.len as usize];
        match file.read_exact_at(&mut frame, p.offset) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io("cannot read", e)),
        }
        let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(frame[4..8].try_into().expect("4 bytes"));
        let body = frame.split_off(HEADER);
        Ok((len == p.len && crc == crc32fast::hash(&body)).then_some(body))
    }

    fn reader(&self, segment: u32) -> std::io::Result<Arc<File>> {
        if let Some(f) = self
            .readers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&segment)
        {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(self.dir.join(segment_name(segment)))?);
        self.readers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(segment, file.clone());
        Ok(file)
    }

    /// Delete the closed segments whose every entry is older than
    /// `before_ms` (their pointers were pruned); how many.
    pub(super) fn prune(&self, before_ms: i64) -> Result<usize, StorageError> {
        let current = self.writer().segment;
        let mut deleted = 0;
        for segment in Self::list(&self.dir)? {
            if segment >= current || self.newest(segment)? >= before_ms {
                continue;
            }
            self.readers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&segment);
            std::fs::remove_file(self.dir.join(segment_name(segment)))
                .map_err(|e| io("cannot delete a segment", e))?;
            let _ = std::fs::remove_file(self.dir.join(newest_name(segment)));
            deleted += 1;
        }
        Ok(deleted)
    }

    /// A closed segment's newest time: kept beside it when it rolled, or
    /// (a segment a restart closed) read from its frames, up to the first
    /// that does not check (a torn tail: nothing was appended after it).
    fn newest(&self, segment: u32) -> Result<i64, StorageError> {
        let kept = self.dir.join(newest_name(segment));
        if let Some(n) = std::fs::read_to_string(&kept)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return Ok(n);
        }
        let file = File::open(self.dir.join(segment_name(segment)))
            .map_err(|e| io("cannot read a segment", e))?;
        let size = file
            .metadata()
            .map_err(|e| io("cannot read a segment", e))?
            .len();
        let (mut offset, mut newest) = (0u64, i64::MIN);
        let mut header = [0u8; HEADER];
        while offset + HEADER as u64 <= size {
            if file.read_exact_at(&mut header, offset).is_err() {
                break;
            }
            let len = u64::from(u32::from_le_bytes(header[..4].try_into().expect("4")));
            // Zeros: the space given ahead of writes, never written.
            if len == 0 || offset + HEADER as u64 + len > size {
                break;
            }
            newest = newest.max(i64::from_le_bytes(header[8..].try_into().expect("8")));
            offset += HEADER as u64 + len;
        }
        std::fs::write(&kept, newest.to_string()).map_err(|e| io("cannot close a segment", e))?;
        Ok(newest)
    }

    /// Bytes the segments take on disk.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> u64 {
        Self::list(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| std::fs::metadata(self.dir.join(segment_name(*s))).ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_read_back_across_rolls_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open_with(dir.path(), 1000).unwrap();
        let mut written = Vec::new();
        for i in 0..100 {
            let body = format!("decision {i} {}", "x".repeat(i));
            written.push((log.append(i as i64, body.as_bytes()).unwrap(), body));
        }
        log.sync().unwrap();
        assert!(Segments::list(&log.dir).unwrap().len() > 5, "it rolled");
        let again = Segments::open_with(dir.path(), 1000).unwrap();
        for (p, body) in &written {
            assert_eq!(again.read(*p).unwrap().unwrap(), body.as_bytes());
        }
        // Appends after a reopen go to a new segment.
        let p = again.append(7, b"after").unwrap();
        assert!(p.segment > written.last().unwrap().0.segment);
        assert_eq!(p.offset, 0);
        assert_eq!(again.read(p).unwrap().unwrap(), b"after");
    }

    #[test]
    fn a_damaged_or_missing_entry_is_absent_not_another_entry() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open(dir.path()).unwrap();
        let p = log.append(1, b"the body").unwrap();
        let path = log.dir.join(segment_name(p.segment));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[p.offset as usize + HEADER + p.len as usize - 1] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let fresh = Segments::open(dir.path()).unwrap();
        assert_eq!(fresh.read(p).unwrap(), None);
        let wrong = Pointer { len: 3, ..p };
        assert_eq!(fresh.read(wrong).unwrap(), None);
        let past = Pointer {
            offset: 1 << 30,
            ..p
        };
        assert_eq!(fresh.read(past).unwrap(), None);
        let gone = Pointer {
            segment: p.segment + 7,
            ..p
        };
        assert_eq!(fresh.read(gone).unwrap(), None);
    }

    #[test]
    fn pruning_deletes_the_closed_segments_older_than_the_cutoff_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = Segments::open_with(dir.path(), 500).unwrap();
        let mut pointers = Vec::new();
        for t in 0..60 {
            pointers.push((t, log.append(t, &[b'x'; 80]).unwrap()));
        }
        let before = log.bytes();
        // Entries before 30 pruned: segments wholly before it go.
        let deleted = log.prune(30).unwrap();
        assert!(deleted > 0);
        assert!(log.bytes() < before);
        for (t, p) in &pointers {
            if log.read(*p).unwrap().is_none() {
                assert!(*t < 30, "entry at {t} lost");
            }
        }
        // The segment written to is never deleted, however old.
        let current = log.writer().segment;
        log.prune(i64::MAX).unwrap();
        assert_eq!(Segments::list(&log.dir).unwrap(), vec![current]);
        // A segment a restart closed (no `.newest` kept) is read for it.
        let again = Segments::open_with(dir.path(), 500).unwrap();
        again.append(100, b"new").unwrap();
        assert_eq!(again.prune(60).unwrap(), 1);
    }
}
