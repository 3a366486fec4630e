//! The inbox's writers: threads of their own that keep processed events'
//! commits. A commit is a dozen blocking writes; handed to tokio's
//! blocking pool one by one, thousands a second, the pool's own hand-offs
//! (its lock, waking and parking its threads) cost a sixth of the CPU of
//! an event, and its many threads contend inside the store. Here each
//! commit goes to one of a few threads, in turn, over a channel (to one
//! of many for a networked store, whose commits wait on the network).

use crate::storage::{EventCommit, Storage, StorageError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Threads writing commits to a local store: as many as this machine has
/// cores, at most this (measured on two cores: one or two threads alike,
/// both well ahead of the blocking pool).
const MAX_LOCAL_THREADS: usize = 2;

/// How many threads write to a store: a local one is busy on the CPU
/// while it writes (a few threads); a networked one mostly waits for each
/// commit's round trip, so it gets one thread per event processed at
/// once (`parallel`), as many as the blocking pool gave it.
pub fn threads(networked: bool, parallel: usize) -> usize {
    if networked {
        return parallel.max(1);
    }
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_LOCAL_THREADS)
}

type Done = Result<Box<EventCommit>, StorageError>;
type Job = (Box<EventCommit>, oneshot::Sender<Done>);

/// The writers; they stop when this is dropped (once the commits sent
/// are kept).
pub struct Writers {
    lanes: Vec<mpsc::Sender<Job>>,
    next: AtomicUsize,
}

impl Writers {
    /// Start `threads` threads writing to `storage`.
    pub fn start(storage: Arc<dyn Storage>, threads: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let mut lanes = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = mpsc::channel::<Job>();
            let storage = storage.clone();
            std::thread::Builder::new()
                .name(format!("kefu-events-{i}"))
                .spawn(move || {
                    for (commit, done) in rx {
                        let _ = done.send(keep(&*storage, commit));
                    }
                })?;
            lanes.push(tx);
        }
        Ok(Writers {
            lanes,
            next: AtomicUsize::new(0),
        })
    }

    /// Keep `commit`; it comes back once written (not yet flushed).
    pub async fn commit(&self, commit: Box<EventCommit>) -> Done {
        let stopped = || StorageError::Backend("the event writer stopped".into());
        let lane = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        let (tx, rx) = oneshot::channel();
        self.lanes[lane].send((commit, tx)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// One commit, written; a panic in the store is an error of this commit,
/// not the end of its thread.
fn keep(storage: &dyn Storage, commit: Box<EventCommit>) -> Done {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        storage.commit_event(&commit).map(|()| commit)
    }))
    .unwrap_or_else(|_| {
        Err(StorageError::Backend(
            "writing the event's commit panicked".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{EventRecord, EventStatus, SledStorage};

    fn commit_of(storage: &dyn Storage, id: &str) -> Box<EventCommit> {
        let mut event = EventRecord::pending(
            "shop",
            id,
            "message.received",
            &format!("customer:{id}"),
            1_800_000_000,
            1_800_000_000_000,
            "{}".into(),
        );
        event.seq = storage.next_id().unwrap();
        assert!(storage.accept_event(&event).unwrap().is_none());
        event.status = EventStatus::Processed;
        event.commit = storage.next_id().unwrap();
        Box::new(EventCommit {
            event,
            decisions: Vec::new(),
            state: Some(format!("state of {id}")),
            timers_set: Vec::new(),
            timers_cancelled: Vec::new(),
            actions: Vec::new(),
            deliveries: Vec::new(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_sent_together_are_all_kept_and_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn Storage> = Arc::new(SledStorage::open(dir.path()).unwrap());
        let writers = Arc::new(Writers::start(storage.clone(), threads(false, 32)).unwrap());
        let mut tasks = Vec::new();
        for n in 0..50u64 {
            let commit = commit_of(&*storage, &format!("e{n}"));
            let writers = writers.clone();
            tasks.push(tokio::spawn(async move { writers.commit(commit).await }));
        }
        for (n, task) in tasks.into_iter().enumerate() {
            let back = task.await.unwrap().unwrap();
            assert_eq!(back.event.id, format!("e{n}"));
        }
        for n in 0..50 {
            let id = format!("e{n}");
            let kept = storage.event("shop", &id).unwrap().unwrap();
            assert_eq!(kept.status, EventStatus::Processed);
            let state = storage.subject_state("shop", &format!("customer:{id}"));
            assert_eq!(state.unwrap(), Some(format!("state of {id}")));
        }
        assert!(storage.pending_events(100).unwrap().is_empty());
    }
}
