//! One segment of the decision log: `N.seg`, the entries' frames in the
//! order they were appended, and once closed `N.idx`, its index (rows by
//! shop and time, and the rows of each buyer and order). While a segment
//! is written its index is in memory; a segment found without a whole
//! index at open (the one a stop or a crash left open) has it built from
//! its frames, up to the first that does not check (a torn tail).
//!
//! A frame is `len u32 | crc32 u32 | body` (little-endian), the body the
//! entry's JSON; what the index keeps of it is read from the JSON when a
//! segment's index is built again. An index file is a
//! header (`KEFUIDX1`, counts, oldest and newest time), the shops (hash,
//! first row, rows), the rows sorted by shop, time and id, then the
//! subjects (hash, row) sorted by hash and row. It is written whole and
//! synced before it is renamed into place, so one that is there is whole.

use super::row::Row;
use crate::storage::{Decision, StorageError};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

pub(super) const FRAME_HEAD: usize = 8;
const MAGIC: &[u8; 8] = b"KEFUIDX1";
const INDEX_HEAD: usize = 40;
const SHOP: usize = 16;
const SUBJECT: usize = 12;

pub(super) fn io(what: &str, e: std::io::Error) -> StorageError {
    StorageError::Backend(format!("decision log: {what}: {e}"))
}

pub(super) fn seg_path(dir: &Path, no: u32) -> PathBuf {
    dir.join(format!("{no:010}.seg"))
}

pub(super) fn idx_path(dir: &Path, no: u32) -> PathBuf {
    dir.join(format!("{no:010}.idx"))
}

/// The frame of one entry, added to `out`.
pub(super) fn frame_into(out: &mut Vec<u8>, body: &[u8]) {
    out.reserve(FRAME_HEAD + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    out.extend_from_slice(body);
}

/// An index being written: every row appended so far.
#[derive(Default)]
pub(super) struct Building {
    rows: Vec<Row>,
    by_shop: HashMap<u64, Vec<u32>>,
    by_subject: HashMap<u64, Vec<u32>>,
    /// Rows whose entries do not count: appended for an event commit that
    /// then failed (its frames stay in the file, unread).
    dead: HashSet<u32>,
    pub oldest: i64,
    pub newest: i64,
}

impl Building {
    pub(super) fn new() -> Self {
        Building {
            oldest: i64::MAX,
            newest: i64::MIN,
            ..Default::default()
        }
    }

    pub(super) fn push(&mut self, row: Row, subjects: &[u64]) {
        let n = self.rows.len() as u32;
        self.by_shop.entry(row.shop).or_default().push(n);
        for s in subjects.iter().filter(|s| **s != 0) {
            self.by_subject.entry(*s).or_default().push(n);
        }
        self.oldest = self.oldest.min(row.at);
        self.newest = self.newest.max(row.at);
        self.rows.push(row);
    }

    pub(super) fn len(&self) -> usize {
        self.rows.len() - self.dead.len()
    }

    /// The row of the frame at `offset` no longer counts.
    pub(super) fn void(&mut self, offset: u32) {
        if let Ok(i) = self.rows.binary_search_by_key(&offset, |r| r.offset) {
            self.dead.insert(i as u32);
        }
    }

    fn live(&self, i: u32) -> bool {
        !self.dead.contains(&i)
    }
}

/// A closed segment's index: its shops in memory, rows and subjects read
/// from its file when asked.
pub(super) struct Sealed {
    file: File,
    shops: Vec<(u64, u32, u32)>,
    rows_at: u64,
    subjects_at: u64,
    subjects: u32,
    pub count: u32,
    pub oldest: i64,
    pub newest: i64,
}

pub(super) enum Index {
    Open(Building),
    Sealed(Sealed),
}

/// A segment: its file, read by any thread, and its index.
pub(super) struct Segment {
    pub no: u32,
    pub file: File,
    pub index: RwLock<Index>,
}

/// What a reader asks a segment for: a shop's rows in a time window, or
/// those of one of its buyers or orders.
pub(super) struct Want {
    pub shop: u64,
    pub subject: Option<u64>,
    pub since: i64,
    pub until: i64,
}

impl Segment {
    /// The time span of its rows (none when it has none).
    pub(super) fn span(&self) -> Option<(i64, i64)> {
        match &*self.index.read().unwrap_or_else(|e| e.into_inner()) {
            Index::Open(b) if b.len() == 0 => None,
            Index::Open(b) => Some((b.oldest, b.newest)),
            Index::Sealed(s) if s.count == 0 => None,
            Index::Sealed(s) => Some((s.oldest, s.newest)),
        }
    }

    /// The rows `want` names, in time order.
    pub(super) fn rows(&self, want: &Want) -> Result<Vec<Row>, StorageError> {
        let in_window = |r: &Row| r.shop == want.shop && r.at >= want.since && r.at < want.until;
        let mut rows = match &*self.index.read().unwrap_or_else(|e| e.into_inner()) {
            Index::Open(b) => {
                let positions = match want.subject {
                    Some(s) => b.by_subject.get(&s),
                    None => b.by_shop.get(&want.shop),
                };
                positions
                    .into_iter()
                    .flatten()
                    .filter(|&&i| b.live(i))
                    .map(|&i| b.rows[i as usize])
                    .filter(in_window)
                    .collect::<Vec<_>>()
            }
            Index::Sealed(s) => match want.subject {
                Some(subject) => s
                    .subject_rows(subject)?
                    .into_iter()
                    .filter(in_window)
                    .collect(),
                None => s.shop_rows(want)?,
            },
        };
        rows.sort_unstable_by_key(Row::key);
        Ok(rows)
    }

    /// The body of a row's entry, checked; none when its frame does not
    /// check (damaged on disk).
    pub(super) fn body(&self, row: &Row) -> Result<Option<Vec<u8>>, StorageError> {
        let mut f = vec![0; FRAME_HEAD + row.len as usize];
        match self.file.read_exact_at(&mut f, u64::from(row.offset)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io("cannot read", e)),
        }
        let crc = u32::from_le_bytes(f[4..8].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&f[FRAME_HEAD..]) {
            tracing::warn!(
                segment = self.no,
                offset = row.offset,
                "a damaged decision-log entry is skipped"
            );
            return Ok(None);
        }
        Ok(Some(f.split_off(FRAME_HEAD)))
    }

    /// Every row, in frame order (a copy of the store, pruning's count).
    pub(super) fn all_rows(&self) -> Result<Vec<Row>, StorageError> {
        match &*self.index.read().unwrap_or_else(|e| e.into_inner()) {
            Index::Open(b) => Ok((0..b.rows.len() as u32)
                .filter(|&i| b.live(i))
                .map(|i| b.rows[i as usize])
                .collect()),
            Index::Sealed(s) => s.rows_between(0, s.count),
        }
    }
}

/// Whether an entry found in a segment without an index counts (one an
/// event commit appended counts only if the commit was kept).
pub(super) type Keep = dyn Fn(&Decision) -> Result<bool, StorageError> + Send + Sync;

/// Read the frames of `file` from the start into an index, up to the
/// first that does not check, leaving out the entries `keep` refuses; the
/// end of the last frame that checks.
pub(super) fn scan(file: &File, keep: &Keep) -> Result<(Building, u64), StorageError> {
    let size = file
        .metadata()
        .map_err(|e| io("cannot read a segment", e))?
        .len();
    let mut b = Building::new();
    let mut offset = 0u64;
    let mut head = [0u8; FRAME_HEAD];
    while offset + FRAME_HEAD as u64 <= size {
        if file.read_exact_at(&mut head, offset).is_err() {
            break;
        }
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
        let end = offset + FRAME_HEAD as u64 + u64::from(len);
        // Zeros: space given ahead of writes, never written.
        if len == 0 || end > size || end > u64::from(u32::MAX) {
            break;
        }
        let mut body = vec![0; len as usize];
        if file
            .read_exact_at(&mut body, offset + FRAME_HEAD as u64)
            .is_err()
            || u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) != crc32fast::hash(&body)
        {
            break;
        }
        let Ok(d) = serde_json::from_slice::<Decision>(&body) else {
            break;
        };
        if keep(&d)? {
            let mut row = Row::of(&d);
            row.offset = offset as u32;
            row.len = len;
            b.push(row, &super::row::subjects(&d));
        }
        offset = end;
    }
    Ok((b, offset))
}

/// Write `b` as segment `no`'s index file (synced, then renamed into
/// place) and open it.
pub(super) fn seal(dir: &Path, no: u32, b: &Building) -> Result<Sealed, StorageError> {
    let mut order: Vec<u32> = (0..b.rows.len() as u32).filter(|&i| b.live(i)).collect();
    order.sort_unstable_by_key(|&i| {
        let r = &b.rows[i as usize];
        (r.shop, r.at, r.id)
    });
    let mut place = vec![0u32; b.rows.len()];
    for (sorted, &i) in order.iter().enumerate() {
        place[i as usize] = sorted as u32;
    }
    let mut shops: Vec<(u64, u32, u32)> = Vec::new();
    for (sorted, &i) in order.iter().enumerate() {
        let shop = b.rows[i as usize].shop;
        match shops.last_mut() {
            Some(last) if last.0 == shop => last.2 += 1,
            _ => shops.push((shop, sorted as u32, 1)),
        }
    }
    let mut subjects: Vec<(u64, u32)> = b
        .by_subject
        .iter()
        .flat_map(|(h, rows)| {
            rows.iter()
                .filter(|&&i| b.live(i))
                .map(|&i| (*h, place[i as usize]))
        })
        .collect();
    subjects.sort_unstable();
    let mut out = Vec::with_capacity(
        INDEX_HEAD + shops.len() * SHOP + order.len() * Row::BYTES + subjects.len() * SUBJECT,
    );
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(order.len() as u32).to_le_bytes());
    out.extend_from_slice(&(shops.len() as u32).to_le_bytes());
    out.extend_from_slice(&(subjects.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&b.oldest.to_le_bytes());
    out.extend_from_slice(&b.newest.to_le_bytes());
    for (h, first, n) in &shops {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    for &i in &order {
        b.rows[i as usize].write(&mut out);
    }
    for (h, row) in &subjects {
        out.extend_from_slice(&h.to_le_bytes());
        out.extend_from_slice(&row.to_le_bytes());
    }
    let path = idx_path(dir, no);
    crate::files::write_paced(&path, &out, crate::files::Keep::Durable)
        .map_err(|e| io("cannot write a segment's index", e))?;
    open_sealed(&path)?.ok_or_else(|| {
        StorageError::Corrupt("decision log: index just written does not read".into())
    })
}

/// Open an index file; none when it is not there or not whole.
pub(super) fn open_sealed(path: &Path) -> Result<Option<Sealed>, StorageError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot open a segment's index", e)),
    };
    let size = file
        .metadata()
        .map_err(|e| io("cannot read a segment's index", e))?
        .len();
    let mut head = [0u8; INDEX_HEAD];
    if size < INDEX_HEAD as u64 || file.read_exact_at(&mut head, 0).is_err() || &head[..8] != MAGIC
    {
        return Ok(None);
    }
    let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let i64_at = |i: usize| i64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    let (count, shop_count, subjects) = (u32_at(8), u32_at(12), u32_at(16));
    let rows_at = (INDEX_HEAD + shop_count as usize * SHOP) as u64;
    let subjects_at = rows_at + u64::from(count) * Row::BYTES as u64;
    if size != subjects_at + u64::from(subjects) * SUBJECT as u64 {
        return Ok(None);
    }
    let mut table = vec![0u8; shop_count as usize * SHOP];
    file.read_exact_at(&mut table, INDEX_HEAD as u64)
        .map_err(|e| io("cannot read a segment's index", e))?;
    let shops = table
        .chunks_exact(SHOP)
        .map(|c| {
            (
                u64::from_le_bytes(c[..8].try_into().expect("8 bytes")),
                u32::from_le_bytes(c[8..12].try_into().expect("4 bytes")),
                u32::from_le_bytes(c[12..].try_into().expect("4 bytes")),
            )
        })
        .collect();
    Ok(Some(Sealed {
        file,
        shops,
        rows_at,
        subjects_at,
        subjects,
        count,
        oldest: i64_at(24),
        newest: i64_at(32),
    }))
}

impl Sealed {
    fn rows_between(&self, first: u32, end: u32) -> Result<Vec<Row>, StorageError> {
        let mut buf = vec![0u8; (end - first) as usize * Row::BYTES];
        self.file
            .read_exact_at(
                &mut buf,
                self.rows_at + u64::from(first) * Row::BYTES as u64,
            )
            .map_err(|e| io("cannot read a segment's index", e))?;
        Ok(buf.chunks_exact(Row::BYTES).map(Row::read).collect())
    }

    fn row(&self, i: u32) -> Result<Row, StorageError> {
        Ok(self.rows_between(i, i + 1)?[0])
    }

    /// A shop's rows of the window: its range, narrowed by time with two
    /// binary searches.
    fn shop_rows(&self, want: &Want) -> Result<Vec<Row>, StorageError> {
        let Ok(at) = self.shops.binary_search_by_key(&want.shop, |s| s.0) else {
            return Ok(Vec::new());
        };
        let (_, first, n) = self.shops[at];
        let start = self.first_where(first, first + n, |r| r.at >= want.since)?;
        let end = self.first_where(start, first + n, |r| r.at >= want.until)?;
        self.rows_between(start, end)
    }

    /// The first row of `[lo, hi)` for which `past` holds (rows sorted so
    /// that it holds for a suffix), or `hi`.
    fn first_where(
        &self,
        mut lo: u32,
        mut hi: u32,
        past: impl Fn(&Row) -> bool,
    ) -> Result<u32, StorageError> {
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if past(&self.row(mid)?) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    fn subject(&self, i: u32) -> Result<(u64, u32), StorageError> {
        let mut b = [0u8; SUBJECT];
        self.file
            .read_exact_at(&mut b, self.subjects_at + u64::from(i) * SUBJECT as u64)
            .map_err(|e| io("cannot read a segment's index", e))?;
        Ok((
            u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            u32::from_le_bytes(b[8..].try_into().expect("4 bytes")),
        ))
    }

    /// The rows of one buyer or order.
    fn subject_rows(&self, subject: u64) -> Result<Vec<Row>, StorageError> {
        let (mut lo, mut hi) = (0, self.subjects);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.subject(mid)?.0 >= subject {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let mut out = Vec::new();
        while lo < self.subjects {
            let (h, row) = self.subject(lo)?;
            if h != subject {
                break;
            }
            out.push(self.row(row)?);
            lo += 1;
        }
        Ok(out)
    }
}
