//! The embedded backend: sled 0.34. One tree per kind of record, one
//! file per capability (`decisions`, `revisits`, `versions`, `state`);
//! keys and values are made in `keys`; most decision-log entries are in
//! segment files beside sled (`log`). Writes that belong together are
//! all or nothing across a crash: a decision and its effects under an
//! intent settled at open (`decisions`), a revisit's move between
//! indexes and revisits fired with their webhooks in one sled transaction
//! (`revisits`), the state quota likewise (`state`).

mod components;
mod decisions;
mod events;
mod keys;
mod log;
mod revisits;
mod state;
#[cfg(test)]
mod tests;
mod versions;

use super::{Durable, Ids, StorageError};
use keys::{backend, decode, shop_prefix};
use serde::de::DeserializeOwned;
use sled::transaction::ConflictableTransactionError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// sled's page cache unless configured: enough for the hot decision log.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
/// How long opening waits for a lock a dropped handle still holds.
const LOCK_WAIT: Duration = Duration::from_secs(1);

pub struct SledStorage {
    /// Held for its drop: first, so that it stops (and lets go of the
    /// store) first.
    #[cfg_attr(not(test), allow(dead_code))]
    flusher: Flusher,
    db: sled::Db,
    state: sled::Tree,
    /// `shop \0 time id` -> decision, for decisions written with more
    /// (a refund, revisits, a workflow's commit) and by earlier builds;
    /// retention walks it shop by shop.
    decisions: sled::Tree,
    /// The other decisions (most answers), in segment files.
    log: Arc<log::Log>,
    /// `shop \0 kind len subject time id` → nothing: the decision log by
    /// customer (`c`) and by order (`o`).
    decision_subjects: sled::Tree,
    /// `shop \0 hour` → orders confirmed that hour (u64, big-endian),
    /// added to with a merge.
    tallies: sled::Tree,
    refunds: sled::Tree,
    revisits: sled::Tree,
    /// id -> primary key of the revisit
    revisit_ids: sled::Tree,
    /// due time + id -> id, planned revisits only
    revisits_due: sled::Tree,
    outbox: sled::Tree,
    do_not_contact: sled::Tree,
    /// shop -> bytes of plugin state it keeps (when a quota is set)
    state_usage: sled::Tree,
    /// Bytes of state one shop may keep; 0: no quota.
    state_quota: u64,
    audit: sled::Tree,
    /// Component bytes by digest, in a store of their own.
    components: components::Components,
    versions: sled::Tree,
    active: sled::Tree,
    /// shop -> what its last good `shop.toml` said
    shops: sled::Tree,
    /// shop step -> its running canary
    canaries: sled::Tree,
    /// decision id -> what a decision with effects is about to write
    /// (see `decisions`): a leftover entry at open is a write a crash cut
    /// short, undone then.
    intents: sled::Tree,
    /// The workflow (see `events`): `shop \0 event id` -> event record.
    events: sled::Tree,
    /// arrival seq -> `shop \0 event id`, pending events only.
    events_pending: sled::Tree,
    /// `shop \0 subject \0 seq` -> event id, for timelines.
    events_by_subject: sled::Tree,
    /// `shop \0 subject` -> what the flow keeps for it.
    subjects: sled::Tree,
    /// `shop \0 subject \0 name` -> timer; `due id` -> its key.
    timers: sled::Tree,
    timers_due: sled::Tree,
    /// `shop \0 id` -> action.
    actions: sled::Tree,
    /// commit id -> what an event commit is about to overwrite.
    event_intents: sled::Tree,
    /// Tests make a multi-record write fail at a named point between its
    /// parts, to show that none of it stays.
    #[cfg(test)]
    fail_at: std::sync::Mutex<Option<(&'static str, Failure)>>,
}

impl SledStorage {
    /// Open (or create) the store in `dir`, with sled's default page cache
    /// (64 MiB here; sled's own default is 1 GiB).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Open with a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let open = || {
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                // Not sled's own flush: an event's record must not be
                // durable before the decision-log frames it lists, so
                // every flush syncs the segments first (`Flusher`).
                .flush_every_ms(None)
                .open()
                .map_err(|e| match e {
                    // sled takes an exclusive lock on its files at open, and
                    // says so in an `Other` error when it cannot.
                    sled::Error::Io(io)
                        if io.kind() == std::io::ErrorKind::WouldBlock
                            || io.to_string().contains("could not acquire lock") =>
                    {
                        StorageError::Locked(io.to_string())
                    }
                    e => backend(e),
                })
        };
        // A handle to the store dropped in this process lets go of the
        // lock a moment later (sled's shared I/O threads finish its work
        // first; longer when other stores keep them busy): wait that out.
        // Another process holding it is still refused, after the wait.
        let started = std::time::Instant::now();
        let db = loop {
            match open() {
                Err(StorageError::Locked(_)) if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                opened => break opened?,
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        // Stores written by earlier builds kept a second, global time
        // index of the decision log; retention no longer needs it.
        db.drop_tree("decisions_by_time").map_err(backend)?;
        // They also kept component bytes in the `blobs` tree.
        let components = components::Components::open(dir, &db, "blobs")?;
        let events = tree("events")?;
        let log = Arc::new(log::Log::open(dir, events::beside_log(&db, &events))?);
        Ok(SledStorage {
            flusher: Flusher::start(&db, &log)?,
            state: tree("state")?,
            decisions: tree("decisions")?,
            log,
            decision_subjects: tree("decision_subjects")?,
            tallies: {
                let t = tree("tallies")?;
                t.set_merge_operator(decisions::add_counts);
                t
            },
            refunds: tree("refunds")?,
            revisits: tree("revisits")?,
            revisit_ids: tree("revisit_ids")?,
            revisits_due: tree("revisits_due")?,
            outbox: tree("outbox")?,
            do_not_contact: tree("do_not_contact")?,
            state_usage: tree("state_usage")?,
            state_quota: 0,
            audit: tree("audit")?,
            components,
            versions: tree("versions")?,
            active: tree("active")?,
            shops: tree("shops")?,
            canaries: tree("canaries")?,
            intents: tree("intents")?,
            events,
            events_pending: tree("events_pending")?,
            events_by_subject: tree("events_by_subject")?,
            subjects: tree("subjects")?,
            timers: tree("timers")?,
            timers_due: tree("timers_due")?,
            actions: tree("actions")?,
            event_intents: tree("event_intents")?,
            db,
            #[cfg(test)]
            fail_at: std::sync::Mutex::new(None),
        })
        .and_then(|store| {
            store.finish_intents()?;
            store.finish_commits()?;
            store.index_old_decisions()?;
            Ok(store)
        })
    }

    /// Inside a transaction, between the parts of a write: abort it here
    /// if a test asked for a failure at `point`.
    #[inline]
    fn fail_point(
        &self,
        point: &'static str,
    ) -> Result<(), ConflictableTransactionError<StorageError>> {
        self.fail(point)
            .map_err(|(e, _)| ConflictableTransactionError::Abort(e))
    }

    /// Between the parts of a write outside a transaction: the failure a
    /// test asked for at `point`, if any, and whether it is a crash (the
    /// process gone: nothing more is written) or an error.
    #[inline]
    fn fail(&self, point: &'static str) -> Result<(), (StorageError, Failure)> {
        #[cfg(test)]
        if let Some((at, kind)) = *self.fail_at.lock().unwrap()
            && at == point
        {
            return Err((
                StorageError::Backend(format!("injected failure at {point}")),
                kind,
            ));
        }
        let _ = point;
        Ok(())
    }

    /// Keep decisions for `retention_ms`: the log's segments roll at a
    /// twentieth of it, so that retention frees space in twentieths.
    pub fn with_decision_retention(self, retention_ms: u64) -> Self {
        self.log.set_retention(retention_ms);
        self
    }

    /// A number the store keeps for its owner (the NATS backend's last op
    /// applied to this store as its view), in the default tree.
    pub fn meta(&self, key: &str) -> Result<Option<u64>, StorageError> {
        Ok(self
            .db
            .get(format!("meta/{key}"))
            .map_err(backend)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes)))
    }

    pub fn set_meta(&self, key: &str, value: u64) -> Result<(), StorageError> {
        self.db
            .insert(format!("meta/{key}"), &value.to_be_bytes())
            .map_err(backend)?;
        Ok(())
    }

    /// Visit every record the store keeps, tree by tree (a copy of the
    /// store: `kefu migrate`), leaving out what only a write in progress
    /// keeps (intents, settled at open) and component bytes (by digest,
    /// through [`crate::storage::VersionStore::component`]).
    pub fn export(&self, visit: &mut Visit<'_>) -> Result<(), StorageError> {
        for name in COPIED_TREES {
            let tree = self.db.open_tree(name).map_err(backend)?;
            for item in tree.iter() {
                let (k, v) = item.map_err(backend)?;
                visit(name, &k, &v)?;
            }
        }
        // The segments' decisions, as the tree keeps them: a copy keeps
        // them in its own tree (findable by buyer and order once indexed).
        self.log.each(&mut |d, body| {
            visit("decisions", &keys::timed_key(&d.shop, d.at_ms, d.id), body)?;
            for key in decisions::subject_keys(d) {
                visit("decision_subjects", &key, &[])?;
            }
            Ok(())
        })
    }

    /// Keep one record [`SledStorage::export`] visited, as it was.
    pub fn import(&self, tree: &str, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        if !COPIED_TREES.contains(&tree) {
            return Err(StorageError::Corrupt(format!(
                "no tree `{tree}` to copy a record into"
            )));
        }
        self.db
            .open_tree(tree)
            .and_then(|t| t.insert(key, value))
            .map_err(backend)?;
        Ok(())
    }

    fn newest<T: DeserializeOwned>(
        tree: &sled::Tree,
        shop: &str,
        limit: usize,
    ) -> Result<Vec<T>, StorageError> {
        tree.scan_prefix(shop_prefix(shop))
            .rev()
            .take(limit)
            .map(|item| decode(&item.map_err(backend)?.1))
            .collect()
    }
}

/// Called with each record a copy visits: its tree, key and value.
pub type Visit<'a> = dyn FnMut(&str, &[u8], &[u8]) -> Result<(), StorageError> + 'a;

/// The trees a copy of the store carries (see [`SledStorage::export`]).
const COPIED_TREES: &[&str] = &[
    "state",
    "decisions",
    "decision_subjects",
    "tallies",
    "refunds",
    "revisits",
    "revisit_ids",
    "revisits_due",
    "outbox",
    "do_not_contact",
    "state_usage",
    "audit",
    "versions",
    "active",
    "shops",
    "canaries",
    "events",
    "events_pending",
    "events_by_subject",
    "subjects",
    "timers",
    "timers_due",
    "actions",
];

/// How an injected failure behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// A write fails and the caller goes on (and cleans up).
    Error,
    /// The process dies there: nothing after it runs.
    #[cfg_attr(not(test), allow(dead_code))]
    Crash,
}

/// Make every write durable: the decision log's segments first, so that
/// no event record is durable before the frames it lists.
fn flush_in_order(log: &log::Log, db: &sled::Db) -> Result<(), StorageError> {
    log.sync()?;
    db.flush().map(|_| ()).map_err(backend)
}

/// How often the store is flushed with nobody waiting (sled's own
/// default, which this replaces).
const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// The store's background flush, as sled's own would do it but with the
/// decision log's segments synced first.
struct Flusher {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    #[cfg(test)]
    flushes: Arc<std::sync::atomic::AtomicU64>,
}

impl Flusher {
    fn start(db: &sled::Db, log: &Arc<log::Log>) -> Result<Self, StorageError> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (db, log) = (db.clone(), log.clone());
        let flushes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = flushes.clone();
        let thread = std::thread::Builder::new()
            .name("kefu-store-flush".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(FLUSH_EVERY)
                {
                    match flush_in_order(&log, &db) {
                        Ok(()) => {
                            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => tracing::warn!(error = %e, "the store's background flush failed"),
                    }
                }
            })
            .map_err(|e| StorageError::Backend(format!("cannot start the store's flush: {e}")))?;
        #[cfg(not(test))]
        let _ = flushes;
        Ok(Flusher {
            stop: Some(stop),
            thread: Some(thread),
            #[cfg(test)]
            flushes,
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Ids for SledStorage {
    fn next_id(&self) -> Result<u64, StorageError> {
        self.db.generate_id().map_err(backend)
    }
}

impl Durable for SledStorage {
    fn flush(&self) -> Result<(), StorageError> {
        // Components are flushed as they are put (see `components`).
        flush_in_order(&self.log, &self.db)
    }

    fn probe(&self) -> Result<(), StorageError> {
        self.db
            .insert(
                "kefu-probe",
                &chrono::Utc::now().timestamp_millis().to_be_bytes(),
            )
            .map_err(backend)?;
        self.flush()
    }
}
