//! A node's view follows the ops stream: an ordered consumer from the op
//! after the last one applied, each op applied to the view in the
//! stream's order on a thread of its own, and whoever waits for an op
//! (the node that wrote it, to read what it wrote) told once it is.

use super::ops::{Change, Op, Outcome};
use crate::storage::{SledStorage, StorageError};
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::stream::Stream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::ops::Not;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The view's key for the last op applied.
pub const APPLIED_KEY: &str = "nats-applied";
/// Header naming the node that wrote an op.
pub const NODE_HEADER: &str = "Kefu-Node";
/// Header set on an op whose writer waits for its outcome.
pub const WAIT_HEADER: &str = "Kefu-Wait";

/// Called with each change another node made.
pub type OnChange = Box<dyn Fn(Change) + Send + Sync>;

/// One op received, for the apply thread.
struct Received {
    seq: u64,
    op: Result<Op, String>,
    /// Written by this node, which waits for its outcome.
    wanted: bool,
    /// Written by another node.
    foreign: bool,
}

/// Where applying stands.
#[derive(Default)]
struct Progress {
    applied: u64,
    /// Outcomes of this node's ops, until their writer takes them.
    outcomes: HashMap<u64, Result<Outcome, StorageError>>,
    /// The view failed to apply an op: nothing after it is applied.
    stuck: Option<String>,
}

pub struct Applier {
    progress: Mutex<Progress>,
    applied: Condvar,
    on_change: Mutex<Vec<OnChange>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Applier {
    pub fn new(applied: u64) -> Arc<Self> {
        Arc::new(Applier {
            progress: Mutex::new(Progress {
                applied,
                ..Default::default()
            }),
            applied: Condvar::new(),
            on_change: Mutex::new(Vec::new()),
            thread: Mutex::new(None),
        })
    }

    pub fn applied(&self) -> u64 {
        self.lock().applied
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn on_change(&self, f: OnChange) {
        self.on_change
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f);
    }

    /// Wait for the apply thread to end (once the stream is no longer
    /// followed), so that the view is closed.
    pub fn join(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Why the view stopped applying, if it did.
    pub fn stuck(&self) -> Option<String> {
        self.lock().stuck.clone()
    }

    /// Wait until the op at `seq` is applied (at most `timeout`); its
    /// outcome when `take` (the op was written with [`WAIT_HEADER`]).
    pub fn wait(
        &self,
        seq: u64,
        take: bool,
        timeout: Duration,
    ) -> Result<Option<Result<Outcome, StorageError>>, StorageError> {
        let deadline = Instant::now() + timeout;
        let mut p = self.lock();
        while p.applied < seq {
            if let Some(why) = &p.stuck {
                return Err(StorageError::Backend(format!(
                    "this node's view of the NATS store stopped at op {}: {why}",
                    p.applied
                )));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StorageError::NotConfirmed(timeout));
            }
            p = self
                .applied
                .wait_timeout(p, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(if take { p.outcomes.remove(&seq) } else { None })
    }

    /// Follow `stream` from the op after the last applied, for ever: ops
    /// go to `view` on a thread of its own. `node`: this node's name.
    pub fn start(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        stream: Stream,
        filter: String,
        view: Arc<SledStorage>,
        node: String,
    ) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Received>(4096);
        let this = self.clone();
        let thread = std::thread::Builder::new()
            .name("kefu-nats-apply".into())
            .spawn(move || this.apply_all(rx, &view))
            .expect("spawn the apply thread");
        *self.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        let this = self.clone();
        handle.spawn(async move {
            loop {
                let from = this.applied() + 1;
                if let Err(e) = receive(&stream, &filter, from, &node, &tx, &this).await {
                    tracing::warn!(error = %e, from, "following the NATS ops stream: starting again");
                }
                if this.stuck().is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    /// Apply ops as they come, in order.
    fn apply_all(&self, rx: std::sync::mpsc::Receiver<Received>, view: &SledStorage) {
        // The first op after a start may have been applied already (the
        // view keeps the last op applied after applying it).
        let mut again = true;
        while let Ok(r) = rx.recv() {
            if r.seq <= self.applied() {
                continue;
            }
            let changes = r.op.as_ref().map(Op::changes).unwrap_or_default();
            let outcome = match r.op {
                Ok(op) => op.apply(view, again),
                Err(e) => {
                    // An op this build cannot read (a newer node's): the
                    // view cannot follow the others past it.
                    let why = format!("op {} is unreadable: {e}", r.seq);
                    tracing::error!(%why, "this node's view stops");
                    self.lock().stuck = Some(why);
                    self.applied.notify_all();
                    return;
                }
            };
            again = false;
            let outcome = match outcome {
                Err(StorageError::Corrupt(e)) => Err(StorageError::Corrupt(e)),
                Err(e) => {
                    // The view could not write: stop here rather than skip
                    // an op (it is applied after a restart).
                    let why = format!("cannot apply op {}: {e}", r.seq);
                    tracing::error!(%why, "this node's view stops");
                    self.lock().stuck = Some(why);
                    self.applied.notify_all();
                    return;
                }
                ok => ok,
            };
            if let Err(e) = view.set_meta(APPLIED_KEY, r.seq) {
                tracing::warn!(error = %e, "cannot keep the last op applied");
            }
            {
                let mut p = self.lock();
                p.applied = r.seq;
                if r.wanted {
                    p.outcomes.insert(r.seq, outcome);
                }
            }
            self.applied.notify_all();
            if r.foreign && !changes.is_empty() {
                let hooks = self.on_change.lock().unwrap_or_else(|e| e.into_inner());
                for change in changes {
                    for f in hooks.iter() {
                        f(change.clone());
                    }
                }
            }
        }
    }
}

/// Receive ops from `from` on and hand them to the apply thread, until
/// the consumer fails.
async fn receive(
    stream: &Stream,
    filter: &str,
    from: u64,
    node: &str,
    tx: &std::sync::mpsc::SyncSender<Received>,
    applier: &Applier,
) -> Result<(), String> {
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_string(),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let mine = header(NODE_HEADER).as_deref() == Some(node);
        let received = Received {
            seq,
            op: serde_json::from_slice(&message.payload).map_err(|e| e.to_string()),
            wanted: mine && header(WAIT_HEADER).is_some(),
            foreign: !mine,
        };
        // The apply thread keeps up or holds the stream back here.
        match tx.try_send(received) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(received)) => {
                let tx = tx.clone();
                if tokio::task::spawn_blocking(move || tx.send(received).is_ok())
                    .await
                    .map_err(|e| e.to_string())?
                    .not()
                {
                    return Ok(());
                }
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Ok(()),
        }
        if applier.stuck().is_some() {
            return Ok(());
        }
    }
    Err("the ops stream ended".into())
}
