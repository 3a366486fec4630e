//! Group commit: a request waits until its writes are flushed, and one
//! flush serves every request that arrived while the last one ran.
//!
//! The flusher is its own thread. A lone request is flushed at once; under
//! load (the last flush served several requests), flushes start at most
//! every [`MIN_FLUSH_INTERVAL`], so each one serves more requests (one
//! `fsync` for many answers) at the price of at most that much extra wait.

use crate::storage::{Durable, StorageError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

type Waiter = oneshot::Sender<Result<(), String>>;

/// Shortest time between the starts of two flushes.
pub const MIN_FLUSH_INTERVAL: Duration = Duration::from_micros(1_000);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Waiter>,
    flushes: Arc<AtomicU64>,
}

impl Committer {
    /// Start the flusher thread. It stops when every `Committer` is gone.
    pub fn start(storage: Arc<dyn Durable>) -> Self {
        Self::with_interval(storage, MIN_FLUSH_INTERVAL)
    }

    pub fn with_interval(storage: Arc<dyn Durable>, interval: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Waiter>();
        let flushes = Arc::new(AtomicU64::new(0));
        let count = flushes.clone();
        std::thread::Builder::new()
            .name("kefu-commit".into())
            .spawn(move || flusher(storage, rx, interval, &count))
            .expect("spawn the group-commit thread");
        Committer { tx, flushes }
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
        async move {
            queued.map_err(|_| stopped())?;
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(StorageError::Backend(e)),
                Err(_) => Err(stopped()),
            }
        }
    }
}

fn flusher(
    storage: Arc<dyn Durable>,
    mut rx: mpsc::UnboundedReceiver<Waiter>,
    interval: Duration,
    flushes: &AtomicU64,
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
        let result = storage.flush().map_err(|e| e.to_string());
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
}
