//! Group commit: a request waits until its writes are flushed, and one
//! flush serves every request that arrived while the last one ran.
//!
//! The flusher is its own thread. A lone request is flushed at once; under
//! load (the last flush served several requests), flushes start at most
//! every [`MIN_FLUSH_INTERVAL`], so each one serves more requests (one
//! `fsync` for many answers) at the price of at most that much extra wait.
//!
//! It also knows whether storage can write ([`Health`]): a flush that
//! failed, or one still running after [`STUCK_AFTER`], marks it failing
//! (logged once, counted, `/readyz` 503); while failing, step requests are
//! refused at once instead of waiting, and a probe every
//! [`PROBE_EVERY`] writes and flushes one small key: when it succeeds,
//! writes resume (logged once). No wait for durability lasts longer than
//! [`DURABLE_DEADLINE`].
//!
//! It also keeps the data dir's filesystem from filling: below a reserve
//! of free space ([`reserve`]) storage counts as failing before the store
//! ever meets "no space left" — sled 0.34 cannot read some of its pages
//! again after a write failed for space (a read may need to finish a
//! split), so the reserve keeps reads answering and lets writes resume
//! by themselves once space is freed.

use crate::storage::{Durable, StorageError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Shortest time between the starts of two flushes.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_micros(1_000);
/// Longest a request waits for its writes to be made durable.
pub const DURABLE_DEADLINE: Duration = Duration::from_secs(5);
/// A flush still running after this marks storage failing.
pub const STUCK_AFTER: Duration = Duration::from_secs(3);
/// How often a failing storage is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Free space the data dir's filesystem needs before the server restarts
/// itself to open a store that failed (see [`Health::restart_if_room`]).
const RESTART_ROOM: u64 = 8 << 20;
/// How often the free space of the data dir's filesystem is looked at
/// (at every step request once less than twice the reserve is free).
const DISK_EVERY_MS: i64 = 200;

/// The free space kept on a filesystem of `total` bytes unless configured
/// (`disk_reserve_mib`): a tenth of it, at most 64 MiB.
pub fn reserve(total: u64) -> u64 {
    (total / 10).min(64 << 20)
}

/// Free and total bytes of the filesystem holding `path`.
fn disk_space(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

/// The data dir, whose filesystem's free space is watched.
struct Disk {
    path: std::path::PathBuf,
    /// When it was last looked at, unix ms.
    checked_ms: std::sync::atomic::AtomicI64,
    /// Less than twice the reserve was free when last looked at: look at
    /// every write then (a burst could use up the reserve between two
    /// looks).
    near: std::sync::atomic::AtomicBool,
    /// The configured reserve, bytes (`None`: [`reserve`]).
    keep: Option<u64>,
}

impl Disk {
    /// The free space kept on its filesystem of `total` bytes.
    fn kept(&self, total: u64) -> u64 {
        self.keep.unwrap_or_else(|| reserve(total))
    }

    /// Why writes must stop for space, if they must.
    fn low(&self) -> Option<String> {
        let (free, total) = disk_space(&self.path)?;
        let keep = self.kept(total);
        if keep == 0 {
            return None;
        }
        self.near.store(free < 2 * keep, Ordering::Relaxed);
        (free < keep).then(|| {
            format!(
                "the data dir's filesystem is almost full: {} MiB free of {} MiB, and kefu keeps {} MiB free so that what it wrote stays readable",
                free >> 20,
                total >> 20,
                keep >> 20
            )
        })
    }
}

/// What restarts the server (see [`Committer::on_store_stuck`]).
pub type Restart = Box<dyn Fn(&str) + Send + Sync>;

/// Whether storage can write now.
#[derive(Default)]
pub struct Health {
    /// Whether writes fail: read on every step request, so an atomic.
    is_failing: std::sync::atomic::AtomicBool,
    /// Why writes fail, while they do.
    failing: std::sync::Mutex<Option<String>>,
    /// When the running flush started (unix ms), 0 when none runs.
    flush_started_ms: std::sync::atomic::AtomicI64,
    /// A probe thread is running.
    probing: std::sync::atomic::AtomicBool,
    /// The store itself failed in this episode (not only the reserve of
    /// free space): it is opened again before it is probed.
    engine_failed: std::sync::atomic::AtomicBool,
    /// The data dir, when its free space is watched.
    disk: Option<Disk>,
    /// What restarts the server when the store cannot be opened again.
    restart: std::sync::OnceLock<Restart>,
}

impl Health {
    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Look at the free space every [`DISK_EVERY_MS`] (one caller does,
    /// the others go on): too little is a failure like a failed write.
    fn watch_disk(&self) {
        let Some(disk) = &self.disk else { return };
        let now = Self::now_ms();
        let last = disk.checked_ms.load(Ordering::Relaxed);
        if !disk.near.load(Ordering::Relaxed)
            && (now - last < DISK_EVERY_MS
                || disk
                    .checked_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err())
        {
            return;
        }
        if let Some(reason) = disk.low() {
            self.fail("disk-full", &reason);
        }
    }

    /// Why storage cannot write now, if it cannot.
    pub fn failing(&self) -> Option<String> {
        self.watch_disk();
        if self.is_failing.load(Ordering::Acquire)
            && let Some(reason) = self
                .failing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        {
            return Some(reason);
        }
        let started = self.flush_started_ms.load(Ordering::Relaxed);
        if started == 0 {
            return None;
        }
        let running = Self::now_ms() - started;
        if running > STUCK_AFTER.as_millis() as i64 {
            let reason = format!("a flush has not finished for {} s", running / 1000);
            self.fail("stuck", &reason);
            return Some(reason);
        }
        None
    }

    /// Mark storage failing (logged once per episode, always counted).
    fn fail(&self, kind: &'static str, reason: &str) {
        metrics::counter!("kefu_storage_errors_total", "kind" => kind).increment(1);
        if kind != "disk-full" {
            self.engine_failed.store(true, Ordering::Release);
        }
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.is_none() {
            tracing::error!(%reason, "storage cannot write: step requests answer 503 until it can");
            *failing = Some(reason.to_string());
            self.is_failing.store(true, Ordering::Release);
        }
    }

    /// Mark storage writing again (logged once).
    fn recovered(&self) {
        if !self.is_failing.load(Ordering::Acquire) {
            return;
        }
        // A write that fit in the reserve is no way back.
        if self.disk.as_ref().and_then(Disk::low).is_some() {
            return;
        }
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reason) = failing.take() {
            self.is_failing.store(false, Ordering::Release);
            self.engine_failed.store(false, Ordering::Release);
            tracing::info!(was = %reason, "storage writes again");
        }
    }

    /// Restart the server in place, when it can and the data dir's
    /// filesystem has room for the store to open ([`RESTART_ROOM`] free,
    /// and the reserve).
    fn restart_if_room(&self, cause: &StorageError) {
        let Some(restart) = self.restart.get() else {
            tracing::error!(%cause, "the store cannot be opened again in process: restart kefu");
            return;
        };
        let room = match &self.disk {
            Some(disk) => disk_space(&disk.path)
                .is_some_and(|(free, total)| free >= RESTART_ROOM.max(disk.kept(total))),
            None => true,
        };
        if room {
            restart(&format!(
                "the store cannot be opened again in process: {cause}"
            ));
        }
    }

    /// While failing, probe it every [`PROBE_EVERY`] on a thread of its
    /// own until a probe succeeds (a probe that hangs holds only that
    /// thread).
    fn probe_until_recovered(self: &Arc<Self>, storage: &Arc<dyn Durable>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let (health, storage) = (self.clone(), storage.clone());
        let spawned = std::thread::Builder::new()
            .name("kefu-probe".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(PROBE_EVERY);
                    // A flush still stuck in the store: no way back yet.
                    if health.flush_started_ms.load(Ordering::Relaxed) != 0 {
                        continue;
                    }
                    // Still too little space: no write is tried.
                    if let Some(reason) = health.disk.as_ref().and_then(Disk::low) {
                        health.fail("disk-full", &reason);
                        continue;
                    }
                    // The store itself failed (not only the reserve): open
                    // it again, as a restart would, before writing to it —
                    // sled 0.34 cannot go on after its log failed to write,
                    // and a flush there may wait forever.
                    if health.engine_failed.load(Ordering::Acquire) {
                        match storage.reopen() {
                            Ok(_) => {}
                            Err(e) => {
                                health.fail("reopen", &e.to_string());
                                // The old store's threads still hold it
                                // (sled 0.34 may wait forever on its
                                // failed log): only a new process opens it.
                                if let StorageError::Locked(_) = e {
                                    health.restart_if_room(&e);
                                }
                                continue;
                            }
                        }
                    }
                    match storage.probe() {
                        Ok(()) => {
                            health.recovered();
                            break;
                        }
                        Err(e) => health.fail("probe", &e.to_string()),
                    }
                }
                health.probing.store(false, Ordering::Release);
            });
        if spawned.is_err() {
            self.probing.store(false, Ordering::Release);
        }
    }
}

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiter>,
    flushes: Arc<AtomicU64>,
    health: Arc<Health>,
    storage: Arc<dyn Durable>,
}

impl Committer {
    /// Start the flusher thread. It stops when every `Committer` is gone.
    #[cfg(test)]
    pub fn start(storage: Arc<dyn Durable>) -> Self {
        Self::with_interval(storage, MIN_FLUSH_INTERVAL)
    }

    /// Start the flusher thread, watching the free space of the
    /// filesystem holding `data_dir` and keeping `reserve` bytes free
    /// (`None`: [`reserve`]).
    pub fn watching(
        storage: Arc<dyn Durable>,
        data_dir: &std::path::Path,
        reserve: Option<u64>,
    ) -> Self {
        Self::new(storage, MIN_FLUSH_INTERVAL, Some((data_dir, reserve)))
    }

    #[cfg(test)]
    pub fn with_interval(storage: Arc<dyn Durable>, interval: Duration) -> Self {
        Self::new(storage, interval, None)
    }

    fn new(
        storage: Arc<dyn Durable>,
        interval: Duration,
        data_dir: Option<(&std::path::Path, Option<u64>)>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let health = Arc::new(Health {
            disk: data_dir.map(|(path, keep)| Disk {
                path: path.to_path_buf(),
                keep,
                checked_ms: Default::default(),
                near: Default::default(),
            }),
            ..Health::default()
        });
        let (count, h, s) = (flushes.clone(), health.clone(), storage.clone());
        std::thread::Builder::new()
            .name("kefu-commit".into())
            .spawn(move || flusher(s, rx, interval, &count, &h))
            .expect("spawn the group-commit thread");
        Committer {
            tx,
            flushes,
            health,
            storage,
        }
    }

    /// A write failed in the store itself (not a quota): storage is
    /// failing until a probe succeeds.
    pub fn write_failed(&self, e: &StorageError) {
        if let StorageError::Backend(reason) = e {
            self.health.fail("write", reason);
            self.health.probe_until_recovered(&self.storage);
        }
    }

    /// Why storage cannot write now, if it cannot; while it cannot, a
    /// probe looks for the way back.
    pub fn failing(&self) -> Option<String> {
        let reason = self.health.failing()?;
        self.health.probe_until_recovered(&self.storage);
        Some(reason)
    }

    /// See [`crate::app::App::on_store_stuck`].
    pub fn on_store_stuck(&self, restart: Restart) {
        let _ = self.health.restart.set(restart);
    }

    /// Flushes done so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    /// Wait until everything written before this call is durable. The
    /// wait is queued when this is called, not when the future is first
    /// polled, so waits made together share a flush.
    pub fn durable(&self) -> impl std::future::Future<Output = Result<(), StorageError>> + use<> {
        let stopped = || StorageError::Backend("the flusher stopped".into());
        let (tx, rx) = oneshot::channel();
        let queued = self.tx.send(tx);
        let health = self.health.clone();
        async move {
            queued.map_err(|_| stopped())?;
            match tokio::time::timeout(DURABLE_DEADLINE, rx).await {
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => Err(StorageError::NotDurable(e)),
                Ok(Err(_)) => Err(stopped()),
                Err(_) => {
                    health.fail("deadline", "a flush did not finish in time");
                    Err(StorageError::NotConfirmed(DURABLE_DEADLINE))
                }
            }
        }
    }
}

fn flusher(
    storage: Arc<dyn Durable>,
    mut rx: mpsc::UnboundedReceiver<Waiter>,
    interval: Duration,
    flushes: &AtomicU64,
    health: &Health,
) {
    let mut last_start: Option<Instant> = None;
    let mut last_batch = 0;
    while let Some(first) = rx.blocking_recv() {
        // Under load (the last flush served several requests and started
        // moments ago) let more requests join this one. A lone client, or
        // an idle flusher, is flushed at once.
        if last_batch > 1
            && let Some(wait) = last_start.and_then(|t| interval.checked_sub(t.elapsed()))
        {
            std::thread::sleep(wait);
        }
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let started = Instant::now();
        last_start = Some(started);
        last_batch = batch.len();
        health
            .flush_started_ms
            .store(Health::now_ms(), Ordering::Relaxed);
        let result = storage.flush().map_err(|e| e.to_string());
        health.flush_started_ms.store(0, Ordering::Relaxed);
        match &result {
            Ok(()) => health.recovered(),
            Err(e) => health.fail("flush", e),
        }
        flushes.fetch_add(1, Ordering::Relaxed);
        metrics::histogram!("kefu_flush_duration_seconds").record(started.elapsed());
        metrics::histogram!("kefu_flush_batch_size").record(batch.len() as f64);
        for waiter in batch {
            let _ = waiter.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;
    use std::sync::Mutex;

    #[test]
    fn the_reserve_is_a_tenth_of_the_disk_at_most_64_mib() {
        assert_eq!(reserve(16 << 20), (16 << 20) / 10);
        assert_eq!(reserve(10 << 30), 64 << 20);
        // The filesystem under this test's temporary dir: it answers.
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = disk_space(dir.path()).unwrap();
        assert!(free <= total && total > 0);
    }

    /// A store whose first flush waits until the test opens the gate, so
    /// that every wait is queued behind it whatever the scheduler does.
    struct Gated {
        store: SledStorage,
        gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }

    impl Durable for Gated {
        fn flush(&self) -> Result<(), StorageError> {
            if let Some(gate) = self.gate.lock().unwrap().take() {
                let _ = gate.recv();
            }
            self.store.flush()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waits_share_flushes_and_all_complete() {
        let dir = tempfile::tempdir().unwrap();
        let (open, gate) = std::sync::mpsc::channel();
        let storage: Arc<dyn Durable> = Arc::new(Gated {
            store: SledStorage::open(dir.path()).unwrap(),
            gate: Mutex::new(Some(gate)),
        });
        let committer = Committer::with_interval(storage, Duration::from_millis(20));
        let waits: Vec<_> = (0..50).map(|_| tokio::spawn(committer.durable())).collect();
        open.send(()).unwrap();
        for w in waits {
            w.await.unwrap().unwrap();
        }
        // The first flush took the waits queued when it started (one, or
        // all fifty); every other wait was queued behind it and shares the
        // next one.
        let shared = committer.flushes();
        assert!((1..=2).contains(&shared), "{shared} flushes");
        // Idle again: a lone wait is flushed too.
        committer.durable().await.unwrap();
        assert_eq!(committer.flushes(), shared + 1);
    }

    /// A store whose flushes fail while `broken`, or hang while `stuck`.
    #[derive(Default)]
    struct Faulty {
        broken: std::sync::atomic::AtomicBool,
        stuck: std::sync::atomic::AtomicBool,
    }

    impl Durable for Faulty {
        fn flush(&self) -> Result<(), StorageError> {
            while self.stuck.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.broken.load(Ordering::Relaxed) {
                return Err(StorageError::Backend("No space left on device".into()));
            }
            Ok(())
        }
    }

    /// Wait (a few probes at most) until storage is no longer failing.
    async fn recovers(committer: &Committer) {
        let deadline = Instant::now() + PROBE_EVERY * 5;
        while committer.failing().is_some() {
            assert!(Instant::now() < deadline, "never recovered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// #30: a failing flush marks storage failing at once; a probe finds
    /// the way back by itself when the fault clears.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_flush_marks_storage_failing_until_a_probe_succeeds() {
        let store = Arc::new(Faulty::default());
        let committer = Committer::start(store.clone());
        committer.durable().await.unwrap();
        assert_eq!(committer.failing(), None);
        store.broken.store(true, Ordering::Relaxed);
        let err = committer.durable().await.unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        let reason = committer.failing().expect("failing after a failed flush");
        assert!(reason.contains("No space left"), "{reason}");
        // Still broken: still failing after a probe or two.
        tokio::time::sleep(PROBE_EVERY * 2).await;
        assert!(committer.failing().is_some());
        // Fixed: the probe clears it without anyone writing.
        store.broken.store(false, Ordering::Relaxed);
        recovers(&committer).await;
        committer.durable().await.unwrap();
    }

    /// #30: a flush that hangs never holds a request past the deadline,
    /// and marks storage failing once it has run too long.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stuck_flush_answers_within_the_deadline_and_is_reported() {
        let store = Arc::new(Faulty::default());
        let committer = Committer::start(store.clone());
        store.stuck.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let err = committer.durable().await.unwrap_err();
        let waited = started.elapsed();
        assert!(matches!(err, StorageError::NotConfirmed(_)), "{err}");
        assert!(
            waited < DURABLE_DEADLINE + Duration::from_secs(2),
            "{waited:?}"
        );
        assert!(committer.failing().is_some());
        // Unstuck: back by itself.
        store.stuck.store(false, Ordering::Relaxed);
        recovers(&committer).await;
    }

    /// Like sled 0.34 after its log failed to write: flushes fail, and a
    /// probe waits forever unless the store was opened again first.
    #[derive(Default)]
    struct Wedged {
        reopened: std::sync::atomic::AtomicBool,
    }

    impl Durable for Wedged {
        fn flush(&self) -> Result<(), StorageError> {
            if self.reopened.load(Ordering::Relaxed) {
                return Ok(());
            }
            Err(StorageError::Backend(
                "IO error: No space left on device".into(),
            ))
        }
        fn probe(&self) -> Result<(), StorageError> {
            while !self.reopened.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(())
        }
        fn reopen(&self) -> Result<bool, StorageError> {
            self.reopened.store(true, Ordering::Relaxed);
            Ok(true)
        }
    }

    /// #30: after the store itself failed, the way back opens it again
    /// before writing to it (a probe of the failed store would wait
    /// forever), and writes resume.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_failed_is_opened_again_before_it_is_probed() {
        let store = Arc::new(Wedged::default());
        let committer = Committer::start(store.clone());
        assert!(committer.durable().await.is_err());
        assert!(committer.failing().is_some());
        recovers(&committer).await;
        assert!(store.reopened.load(Ordering::Relaxed));
        committer.durable().await.unwrap();
    }

    /// #30: what failed only for the reserve of free space is not opened
    /// again (sled never saw an error).
    #[test]
    fn only_a_failure_of_the_store_itself_asks_for_a_reopen() {
        let health = Health::default();
        health.fail("disk-full", "almost full");
        assert!(!health.engine_failed.load(Ordering::Acquire));
        health.fail("flush", "No space left on device");
        assert!(health.engine_failed.load(Ordering::Acquire));
        health.recovered();
        assert!(!health.engine_failed.load(Ordering::Acquire));
    }
}
