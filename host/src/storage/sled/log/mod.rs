//! The decision log's plain entries (an answer with nothing else to
//! record, most of them) in append-only segment files under
//! `<data>/decision-log`, beside sled.
//!
//! Why: sled 0.34 copies a kilobyte-sized entry several times as it
//! rewrites its pages (2.1 KB on disk per decision of 650 bytes) and does
//! not give the space back: under a steady load with a short retention
//! its files stayed at six times the live entries (`cargo bench --bench
//! decision_disk`). Here an entry is written once, as one frame, with its
//! row in the segment's index; retention deletes whole segments, and a
//! segment rolls at [`SEGMENT_BYTES`] or at a twentieth of the retention.
//!
//! An entry is read back once [`Log::append`] returns and durable after
//! [`Log::sync`], which the group commit runs with sled's flush before an
//! answer leaves; in between, plain entries wait in memory and the sync
//! writes them together (one write, not one per answer). Entries that
//! record more (a refund, revisits) stay in sled, whose writes they must
//! be atomic with; readers merge both (`decisions`). A workflow event's
//! plain entries are appended here within its commit ([`Log::in_commit`])
//! and count once the commit is kept: a failed one's rows are voided, a
//! segment's index waits for the commits that appended to it and a flush
//! of sled, and at open a segment without an index leaves out what its
//! store refuses ([`Beside`]: the entries whose event's record does not
//! list them).

mod row;
mod segment;

use crate::storage::{Decision, DecisionQuery, StorageError};
use row::{CUSTOMER, ORDER, Row, shop_hash, subject_hash};
use segment::{Building, Index, Segment, Want, idx_path, io, seg_path};
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

/// The folder, inside the store's, that holds the segments.
pub(super) const FOLDER: &str = "decision-log";
/// A segment rolls past this size...
pub const SEGMENT_BYTES: u64 = 32 << 20;
/// ...or this age (a twentieth of the retention, within these bounds).
const MIN_AGE_MS: u64 = 1_000;
const MAX_AGE_MS: u64 = 6 * 3_600_000;
/// Space is given to a segment this much at a time, ahead of its writes:
/// an append then never grows the file, which on ext4 would wait on the
/// journal's commit on the thread answering. A closed segment is cut to
/// what it holds.
const GROW: u64 = 1 << 20;
/// The file keeping the time before which entries were pruned.
const PRUNED: &str = "pruned-before";

/// A segment rolled, and the length of what it holds.
type Rolled = (Arc<Segment>, u64);

/// Called with each entry a copy visits, and its body.
pub(super) type EachEntry<'a> = dyn FnMut(&Decision, &[u8]) -> Result<(), StorageError> + 'a;

struct Writer {
    current: Option<Arc<Segment>>,
    next: u32,
    /// The current segment's length, frames not written yet included.
    len: u64,
    allocated: u64,
    opened: Instant,
    /// Segments appended to since the last sync.
    unsynced: Vec<Arc<Segment>>,
    /// Frames appended to the current segment and not written yet (the
    /// last of its `len`), and their rows: plain entries wait here for the
    /// next sync (or read, roll, or event commit) to be written at once,
    /// instead of a write each.
    pending: Vec<u8>,
    pending_rows: Vec<(Row, Vec<u64>)>,
}

/// Past this many bytes of frames waiting, an append writes them.
const PENDING_BYTES: usize = 256 << 10;

impl Writer {
    /// Write the frames waiting into the current segment, and index them.
    /// When that fails they stay waiting, so that the sync that would
    /// cover them fails too (none is answered as kept).
    fn write_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.current.clone() else {
            return Err(StorageError::Backend(
                "decision log: frames waiting without a segment".into(),
            ));
        };
        let at = self.len - self.pending.len() as u64;
        seg.file
            .write_all_at(&self.pending, at)
            .map_err(|e| io("cannot append", e))?;
        self.pending.clear();
        if let Index::Open(b) = &mut *seg.index.write().unwrap_or_else(|e| e.into_inner()) {
            for (row, subjects) in self.pending_rows.drain(..) {
                b.push(row, &subjects);
            }
        } else {
            self.pending_rows.clear();
        }
        Ok(())
    }
}

/// Entries appended for event commits not settled yet, by segment, and
/// the sealer's wake-up when that count falls.
#[derive(Default)]
struct InCommits {
    by_segment: Mutex<BTreeMap<u32, usize>>,
    settled: Condvar,
}

impl InCommits {
    fn add(&self, segment: u32) {
        *lock(&self.by_segment).entry(segment).or_default() += 1;
    }

    fn settle(&self, segment: u32) {
        let mut counts = lock(&self.by_segment);
        if let Some(n) = counts.get_mut(&segment) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&segment);
                self.settled.notify_all();
            }
        }
    }

    /// Wait until no commit that appended to `segment` is unsettled.
    fn wait(&self, segment: u32) {
        let mut counts = lock(&self.by_segment);
        while counts.contains_key(&segment) {
            counts = self.settled.wait(counts).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What the log asks of the store it sits beside: whether an entry found
/// without an index counts (at open), and making the store's writes
/// durable (before an index is written).
pub(super) struct Beside {
    pub keep: Box<segment::Keep>,
    pub flush: Box<dyn Fn() -> Result<(), StorageError> + Send + Sync>,
}

impl Beside {
    /// Every entry counts; nothing to flush (a log on its own).
    #[cfg(test)]
    pub(super) fn alone() -> Self {
        Beside {
            keep: Box::new(|_| Ok(true)),
            flush: Box::new(|| Ok(())),
        }
    }
}

pub(super) struct Log {
    dir: PathBuf,
    in_commits: Arc<InCommits>,
    /// Rolled segments to close, to the thread that writes their indexes
    /// (off the answering thread: an index is synced).
    sealer: Mutex<Option<std::sync::mpsc::Sender<Rolled>>>,
    sealing: Option<std::thread::JoinHandle<()>>,
    max_bytes: u64,
    max_age_ms: AtomicU64,
    writer: Arc<Mutex<Writer>>,
    /// Held through a sync: one that finds another under way waits for
    /// it, so no flush goes on while frames it must cover are unsynced.
    syncing: Arc<Mutex<()>>,
    segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    /// Entries before this time are pruned (hidden until their segment
    /// goes).
    pruned_before: AtomicI64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Give `file` the bytes `[from, from + len)` as zeros.
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
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) {
                file.set_len((from + len) as u64)
            } else {
                Err(e)
            }
        }
    }
}

impl Log {
    pub(super) fn open(store: &Path, beside: Beside) -> Result<Self, StorageError> {
        Self::open_with(store, SEGMENT_BYTES, beside)
    }

    /// Open the segments in `store`'s folder: each gets its index (built
    /// from its frames when it has none whole, without the entries of
    /// event commits the store did not keep), and appends go to a new
    /// segment after the last.
    pub(super) fn open_with(
        store: &Path,
        max_bytes: u64,
        beside: Beside,
    ) -> Result<Self, StorageError> {
        let dir = store.join(FOLDER);
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot make its folder", e))?;
        // An index (or the retention's mark) a stop cut short mid-write.
        crate::files::sweep_leftovers(&dir);
        let (mut numbers, mut indexes) = (Vec::new(), Vec::new());
        for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot list its folder", e))? {
            let name = entry
                .map_err(|e| io("cannot list its folder", e))?
                .file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name.strip_suffix(".seg").and_then(|n| n.parse().ok()) {
                numbers.push(n);
            } else if let Some(n) = name
                .strip_suffix(".idx")
                .and_then(|n| n.parse::<u32>().ok())
            {
                indexes.push(n);
            }
        }
        numbers.sort_unstable();
        // An index whose segment retention deleted as it was written.
        for n in indexes
            .into_iter()
            .filter(|n| numbers.binary_search(n).is_err())
        {
            let _ = std::fs::remove_file(idx_path(&dir, n));
        }
        let mut segments = BTreeMap::new();
        for no in numbers.iter().copied() {
            if let Some(seg) = Self::open_segment(&dir, no, &*beside.keep)? {
                segments.insert(no, Arc::new(seg));
            }
        }
        let pruned_before = std::fs::read_to_string(dir.join(PRUNED))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(i64::MIN);
        let (sealer, rolled) = std::sync::mpsc::channel::<Rolled>();
        let folder = dir.clone();
        let in_commits = Arc::new(InCommits::default());
        let waits = in_commits.clone();
        let flush = beside.flush;
        let writer = Arc::new(Mutex::new(Writer {
            current: None,
            next: numbers.last().map_or(1, |n| n + 1),
            len: 0,
            allocated: 0,
            opened: Instant::now(),
            unsynced: Vec::new(),
            pending: Vec::new(),
            pending_rows: Vec::new(),
        }));
        let syncing = Arc::new(Mutex::new(()));
        let (appends, synced) = (writer.clone(), syncing.clone());
        let sealing = std::thread::Builder::new()
            .name("kefu-log-seal".into())
            .spawn(move || {
                for (seg, len) in rolled {
                    // An index says its entries count: only once the
                    // commits that appended to it are settled and what
                    // they kept is durable. Until then (or when the flush
                    // fails) its index is read from memory, and a segment
                    // left without one is indexed at the next open.
                    // The segments first: the store's flush may make an
                    // event's record durable, and its entries with it.
                    waits.wait(seg.no);
                    match sync(&appends, &synced).and_then(|()| flush()) {
                        Ok(()) => seal(&folder, &seg, len),
                        Err(e) => tracing::error!(
                            error = %e,
                            segment = seg.no,
                            "cannot flush before closing a decision-log segment; the next start will close it"
                        ),
                    }
                }
            })
            .map_err(|e| io("cannot start its sealing thread", e))?;
        Ok(Log {
            in_commits,
            sealer: Mutex::new(Some(sealer)),
            sealing: Some(sealing),
            writer,
            syncing,
            dir,
            max_bytes,
            max_age_ms: AtomicU64::new(MAX_AGE_MS),
            segments: RwLock::new(segments),
            pruned_before: AtomicI64::new(pruned_before),
        })
    }

    /// A segment found at open, with its index; none (and its files gone)
    /// when it holds no entry.
    fn open_segment(
        dir: &Path,
        no: u32,
        keep: &segment::Keep,
    ) -> Result<Option<Segment>, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(seg_path(dir, no))
            .map_err(|e| io("cannot open a segment", e))?;
        let sealed = match segment::open_sealed(&idx_path(dir, no))? {
            Some(s) => s,
            None => {
                let (built, end) = segment::scan(&file, keep)?;
                if built.len() == 0 {
                    drop(file);
                    let _ = std::fs::remove_file(seg_path(dir, no));
                    return Ok(None);
                }
                tracing::info!(
                    segment = no,
                    entries = built.len(),
                    "decision-log segment indexed at open"
                );
                // A torn tail, or space given ahead, is cut off.
                file.set_len(end)
                    .map_err(|e| io("cannot close a segment", e))?;
                segment::seal(dir, no, &built)?
            }
        };
        Ok(Some(Segment {
            no,
            file,
            index: RwLock::new(Index::Sealed(sealed)),
        }))
    }

    /// Roll segments at a twentieth of `retention_ms`, so that retention
    /// frees space in twentieths of it.
    pub(super) fn set_retention(&self, retention_ms: u64) {
        self.max_age_ms.store(
            (retention_ms / 20).clamp(MIN_AGE_MS, MAX_AGE_MS),
            Ordering::Relaxed,
        );
    }

    /// Append `d`: read back from when this returns, in its file and
    /// durable after the next [`Log::sync`] (until then it may wait in
    /// memory with others, to be written with them).
    pub(super) fn append(&self, d: &Decision, body: &[u8]) -> Result<(), StorageError> {
        self.append_frame(d, body, false).map(|_| ())
    }

    /// Write the frames waiting, so that a read sees every append.
    fn written(&self) -> Result<(), StorageError> {
        lock(&self.writer).write_pending()
    }

    /// Entries of one event commit: each counts once the commit is kept
    /// ([`InCommit::kept`]); dropped unkept, they are left out, and the
    /// segment they are in is not closed before.
    pub(super) fn in_commit(&self) -> InCommit<'_> {
        InCommit {
            log: self,
            appended: Vec::new(),
            kept: false,
        }
    }

    /// Append a frame; where it went. An event commit's frame is in its
    /// file when this returns (with every frame before it): the commit's
    /// records, written next, must not reach the disk before it.
    fn append_frame(
        &self,
        d: &Decision,
        body: &[u8],
        in_commit: bool,
    ) -> Result<(Arc<Segment>, u32), StorageError> {
        let mut row = Row::of(d);
        row.len = u32::try_from(body.len())
            .ok()
            .filter(|l| *l <= row::MAX_LEN && u64::from(*l) < self.max_bytes)
            .ok_or_else(|| {
                StorageError::Backend("decision log: entry larger than a segment".into())
            })?;
        let subjects = row::subjects(d);
        let frame_len = (segment::FRAME_HEAD + body.len()) as u64;
        let mut w = lock(&self.writer);
        let full = w.len + frame_len > self.max_bytes
            || w.opened.elapsed().as_millis() as u64 > self.max_age_ms.load(Ordering::Relaxed);
        if full {
            w.write_pending()?;
        }
        let rolled = match &w.current {
            Some(_) if full => w.current.take().map(|old| (old, w.len)),
            _ => None,
        };
        let seg = match &w.current {
            Some(s) => s.clone(),
            None => {
                let no = w.next;
                let file = OpenOptions::new()
                    .create_new(true)
                    .read(true)
                    .write(true)
                    .open(seg_path(&self.dir, no))
                    .map_err(|e| io("cannot make a segment", e))?;
                let seg = Arc::new(Segment {
                    no,
                    file,
                    index: RwLock::new(Index::Open(Building::new())),
                });
                self.segments
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(no, seg.clone());
                w.next += 1;
                w.len = 0;
                w.allocated = 0;
                w.opened = Instant::now();
                w.current = Some(seg.clone());
                seg
            }
        };
        row.offset = w.len as u32;
        let end = w.len + frame_len;
        if end > w.allocated {
            let more = (end - w.allocated).div_ceil(GROW) * GROW;
            grow(&seg.file, w.allocated, more).map_err(|e| io("cannot grow a segment", e))?;
            w.allocated += more;
        }
        let (bytes_before, rows_before) = (w.pending.len(), w.pending_rows.len());
        segment::frame_into(&mut w.pending, body);
        w.pending_rows.push((row, subjects));
        w.len = end;
        if (in_commit || w.pending.len() >= PENDING_BYTES)
            && let Err(e) = w.write_pending()
        {
            if in_commit {
                // Not this commit's: the frames before it still wait.
                w.pending.truncate(bytes_before);
                w.pending_rows.truncate(rows_before);
                w.len -= frame_len;
            }
            return Err(e);
        }
        if in_commit {
            // Under the writer's lock: a segment rolled after this is
            // not closed before the commit is settled.
            self.in_commits.add(seg.no);
        }
        if !w.unsynced.iter().any(|s| Arc::ptr_eq(s, &seg)) {
            w.unsynced.push(seg.clone());
        }
        drop(w);
        if let Some(rolled) = rolled
            && let Some(sealer) = &*lock(&self.sealer)
        {
            // Closing as the store drops: the next open indexes it.
            let _ = sealer.send(rolled);
        }
        Ok((seg, row.offset))
    }

    /// Make every append so far durable.
    pub(super) fn sync(&self) -> Result<(), StorageError> {
        sync(&self.writer, &self.syncing)
    }

    /// Every segment, oldest first.
    fn all_segments(&self) -> Vec<Arc<Segment>> {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The segments whose entries may fall in `[since, until)`, with
    /// their spans.
    fn overlapping(&self, since: i64, until: i64) -> Vec<(Arc<Segment>, (i64, i64))> {
        self.all_segments()
            .into_iter()
            .filter_map(|s| s.span().map(|span| (s, span)))
            .filter(|(_, (oldest, newest))| *newest >= since && *oldest < until)
            .collect()
    }

    fn want(&self, q: &DecisionQuery) -> Want {
        let subject = q
            .order
            .as_deref()
            .map(|o| subject_hash(&q.shop, ORDER, o))
            .or(q
                .customer
                .as_deref()
                .map(|c| subject_hash(&q.shop, CUSTOMER, c)));
        Want {
            shop: shop_hash(&q.shop),
            subject,
            since: q
                .since_ms
                .unwrap_or(i64::MIN)
                .max(self.pruned_before.load(Ordering::Relaxed)),
            until: q.until_ms.unwrap_or(i64::MAX),
        }
    }

    /// The entry of `row` if it is whole and matches `q` (its step and
    /// version checked on the row first).
    fn load(
        seg: &Segment,
        row: &Row,
        q: &DecisionQuery,
        matches: &dyn Fn(&Decision) -> bool,
    ) -> Result<Option<Decision>, StorageError> {
        if q.step.is_some_and(|s| row::step_byte(s) != row.step)
            || q.version.is_some_and(|v| v != row.version)
        {
            return Ok(None);
        }
        let Some(body) = seg.body(row)? else {
            return Ok(None);
        };
        let d: Decision =
            serde_json::from_slice(&body).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        Ok((d.shop == q.shop && matches(&d)).then_some(d))
    }

    /// Up to `q.limit` entries matching `q`, newest first (`matches`
    /// checks what rows do not say: the buyer, the order).
    pub(super) fn newest_first(
        &self,
        q: &DecisionQuery,
        matches: &dyn Fn(&Decision) -> bool,
    ) -> Result<Vec<Decision>, StorageError> {
        self.written()?;
        let want = self.want(q);
        let mut segs = self.overlapping(want.since, want.until);
        segs.sort_by_key(|(_, (_, newest))| std::cmp::Reverse(*newest));
        let mut found: Vec<Decision> = Vec::new();
        let mut budget = match want.subject {
            Some(_) => usize::MAX,
            None => q.scan_limit.unwrap_or(usize::MAX),
        };
        for (seg, (_, newest)) in segs {
            if found.len() >= q.limit {
                newest_first_sort(&mut found);
                found.truncate(q.limit);
                if found.last().is_some_and(|d| d.at_ms > newest) {
                    break;
                }
            }
            let mut here = 0;
            for row in seg.rows(&want)?.iter().rev() {
                if budget == 0 || here >= q.limit {
                    break;
                }
                budget -= 1;
                if let Some(d) = Self::load(&seg, row, q, matches)? {
                    found.push(d);
                    here += 1;
                }
            }
            if budget == 0 {
                break;
            }
        }
        newest_first_sort(&mut found);
        found.truncate(q.limit);
        Ok(found)
    }

    /// The entries matching `q` (its limit aside), oldest first, one at a
    /// time.
    pub(super) fn oldest_first<'a>(
        &'a self,
        q: &'a DecisionQuery,
        matches: &'a dyn Fn(&Decision) -> bool,
    ) -> Result<Ascending<'a>, StorageError> {
        self.written()?;
        let want = self.want(q);
        let mut segs = self.overlapping(want.since, want.until);
        segs.sort_by_key(|(_, (oldest, _))| *oldest);
        Ok(Ascending {
            q,
            matches,
            want,
            segs,
            next: 0,
            rows: Vec::new(),
            heap: BinaryHeap::new(),
        })
    }

    /// The entry `(shop, at_ms, id)`, if it is here.
    pub(super) fn find(
        &self,
        shop: &str,
        at_ms: i64,
        id: u64,
    ) -> Result<Option<Decision>, StorageError> {
        let q = DecisionQuery {
            shop: shop.into(),
            step: None,
            since_ms: Some(at_ms),
            until_ms: Some(at_ms.saturating_add(1)),
            customer: None,
            order: None,
            version: None,
            limit: usize::MAX,
            scan_limit: None,
        };
        self.written()?;
        let want = self.want(&q);
        for (seg, _) in self.overlapping(want.since, want.until) {
            for row in seg.rows(&want)?.iter().filter(|r| r.id == id) {
                if let Some(d) = Self::load(&seg, row, &q, &|_| true)? {
                    return Ok(Some(d));
                }
            }
        }
        Ok(None)
    }

    /// Prune the entries before `before_ms`: segments wholly before it
    /// are deleted, the rest hidden until theirs are; how many entries.
    pub(super) fn prune(&self, before_ms: i64) -> Result<usize, StorageError> {
        let old = self.pruned_before.load(Ordering::Relaxed);
        if before_ms <= old {
            return Ok(0);
        }
        self.written()?;
        let current = lock(&self.writer).current.as_ref().map(|s| s.no);
        let segments = self.all_segments();
        let mut pruned = 0;
        for seg in segments {
            let Some((oldest, newest)) = seg.span() else {
                continue;
            };
            if oldest >= before_ms || newest < old {
                // Nothing of it newly pruned; one wholly pruned before
                // (its delete failed) goes below.
            } else if oldest >= old && newest < before_ms {
                pruned += match &*seg.index.read().unwrap_or_else(|e| e.into_inner()) {
                    Index::Sealed(s) => s.count as usize,
                    Index::Open(b) => b.len(),
                };
            } else {
                pruned += seg
                    .all_rows()?
                    .iter()
                    .filter(|r| r.at >= old && r.at < before_ms)
                    .count();
            }
            if newest < before_ms && Some(seg.no) != current {
                self.segments
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&seg.no);
                for path in [idx_path(&self.dir, seg.no), seg_path(&self.dir, seg.no)] {
                    match std::fs::remove_file(&path) {
                        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                            return Err(io("cannot delete a segment", e));
                        }
                        _ => {}
                    }
                }
            }
        }
        self.pruned_before.store(before_ms, Ordering::Relaxed);
        crate::files::write_paced(
            &self.dir.join(PRUNED),
            before_ms.to_string().as_bytes(),
            crate::files::Keep::Cache,
        )
        .map_err(|e| io("cannot keep the retention's mark", e))?;
        Ok(pruned)
    }

    /// Visit every entry kept (a copy of the store), segment by segment.
    pub(super) fn each(&self, visit: &mut EachEntry<'_>) -> Result<(), StorageError> {
        self.written()?;
        let since = self.pruned_before.load(Ordering::Relaxed);
        let segments = self.all_segments();
        for seg in segments {
            for row in seg.all_rows()?.iter().filter(|r| r.at >= since) {
                if let Some(body) = seg.body(row)? {
                    let d: Decision = serde_json::from_slice(&body)
                        .map_err(|e| StorageError::Corrupt(e.to_string()))?;
                    visit(&d, &body)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes the log's files take on disk.
    #[cfg(test)]
    pub(super) fn bytes(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }
}

/// The entries one event commit appended (see [`Log::in_commit`]).
pub(super) struct InCommit<'a> {
    log: &'a Log,
    appended: Vec<(Arc<Segment>, u32)>,
    kept: bool,
}

impl InCommit<'_> {
    pub(super) fn append(&mut self, d: &Decision, body: &[u8]) -> Result<(), StorageError> {
        let at = self.log.append_frame(d, body, true)?;
        self.appended.push(at);
        Ok(())
    }

    /// The commit was kept: its entries count.
    pub(super) fn kept(mut self) {
        self.kept = true;
    }
}

impl Drop for InCommit<'_> {
    fn drop(&mut self) {
        for (seg, offset) in self.appended.drain(..) {
            if !self.kept
                && let Index::Open(b) = &mut *seg.index.write().unwrap_or_else(|e| e.into_inner())
            {
                b.void(offset);
            }
            self.log.in_commits.settle(seg.no);
        }
    }
}

impl Drop for Log {
    /// Segments rolled before are closed before the store is.
    fn drop(&mut self) {
        if let Err(e) = self.written() {
            tracing::error!(error = %e, "decision log: cannot write its last entries as it closes");
        }
        lock(&self.sealer).take();
        if let Some(t) = self.sealing.take() {
            let _ = t.join();
        }
    }
}

/// Make every append of `writer` so far durable.
fn sync(writer: &Mutex<Writer>, syncing: &Mutex<()>) -> Result<(), StorageError> {
    // Taken before the list: a sync that finds it emptied by another
    // still under way returns only once that one has synced.
    let _one = lock(syncing);
    let segs = {
        let mut w = lock(writer);
        w.write_pending()?;
        std::mem::take(&mut w.unsynced)
    };
    for (i, s) in segs.iter().enumerate() {
        if let Err(e) = s.file.sync_data() {
            let mut w = lock(writer);
            for s in &segs[i..] {
                if !w.unsynced.iter().any(|u| Arc::ptr_eq(u, s)) {
                    w.unsynced.push(s.clone());
                }
            }
            return Err(io("cannot sync", e));
        }
    }
    Ok(())
}

/// Close a rolled segment: cut its file to what it holds, write its
/// index. Until then (or if that fails) its index is read from memory; a
/// segment without one is indexed at the next open.
fn seal(dir: &Path, seg: &Segment, len: u64) {
    let sealed = (|| {
        seg.file
            .set_len(len)
            .map_err(|e| io("cannot close a segment", e))?;
        match &*seg.index.read().unwrap_or_else(|e| e.into_inner()) {
            Index::Open(b) => segment::seal(dir, seg.no, b).map(Some),
            Index::Sealed(_) => Ok(None),
        }
    })();
    match sealed {
        Ok(Some(s)) => *seg.index.write().unwrap_or_else(|e| e.into_inner()) = Index::Sealed(s),
        Ok(None) => {}
        Err(e) => tracing::error!(
            error = %e,
            segment = seg.no,
            "cannot close a decision-log segment; the next start will"
        ),
    }
}

fn newest_first_sort(ds: &mut [Decision]) {
    ds.sort_unstable_by_key(|d| std::cmp::Reverse((d.at_ms, d.id)));
}

/// The entries of a query oldest first: the rows of the segments that
/// may hold the next one, merged by time.
pub(super) struct Ascending<'a> {
    q: &'a DecisionQuery,
    matches: &'a dyn Fn(&Decision) -> bool,
    want: Want,
    segs: Vec<(Arc<Segment>, (i64, i64))>,
    /// Segments read so far (`segs[..next]`), and their rows.
    next: usize,
    rows: Vec<Vec<Row>>,
    /// The next row of each segment read: (time, id, segment, row).
    heap: BinaryHeap<std::cmp::Reverse<(i64, u64, usize, usize)>>,
}

impl Ascending<'_> {
    pub(super) fn next(&mut self) -> Result<Option<Decision>, StorageError> {
        loop {
            while self.next < self.segs.len()
                && self
                    .heap
                    .peek()
                    .is_none_or(|std::cmp::Reverse((at, ..))| self.segs[self.next].1.0 <= *at)
            {
                let rows = self.segs[self.next].0.rows(&self.want)?;
                if let Some(r) = rows.first() {
                    self.heap
                        .push(std::cmp::Reverse((r.at, r.id, self.next, 0)));
                }
                self.rows.push(rows);
                self.next += 1;
            }
            let Some(std::cmp::Reverse((_, _, s, i))) = self.heap.pop() else {
                return Ok(None);
            };
            if let Some(r) = self.rows[s].get(i + 1) {
                self.heap.push(std::cmp::Reverse((r.at, r.id, s, i + 1)));
            }
            let row = self.rows[s][i];
            if let Some(d) = Log::load(&self.segs[s].0, &row, self.q, self.matches)? {
                return Ok(Some(d));
            }
        }
    }
}

#[cfg(test)]
mod tests;
