//! Several nodes on one NATS store (`[storage] backend = "nats"`): a node
//! follows the deploys and rollbacks another node made (its steps swap
//! to the stored active version), wakes its inbox for events another
//! node accepted, and runs the shared background work — revisits,
//! timers, the workflow inbox, webhooks, canary analysis, retention —
//! only while it holds the lease, so that one node does it at a time and
//! another takes over within the lease's life when it dies.

use super::App;
use crate::storage::{Change, NatsOptions, NatsStorage, StorageError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How often a node looks whether it holds the lease.
const LOOK_EVERY: Duration = Duration::from_millis(250);

/// Open the NATS store `config` names, its view under the data dir.
pub(super) fn open(
    config: &super::ServerConfig,
    env: &super::Env,
) -> Result<NatsStorage, StorageError> {
    let s = &config.storage;
    s.check().map_err(StorageError::Backend)?;
    let node = s.node.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().replace('.', "-"))
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "kefu".into());
        format!("{host}-{}", std::process::id())
    });
    NatsStorage::open(NatsOptions {
        url: s.url.clone(),
        prefix: s.prefix.clone(),
        credentials: s.credentials.clone(),
        token: s.token_env.as_deref().and_then(|var| env(var)),
        view_dir: config.data_dir.join("nats-view"),
        cache_bytes: config.storage_cache_mib << 20,
        state_quota: config.quotas.state_kib * 1024,
        node,
    })
}

/// Follow what other nodes change: deploys swap this node's steps (on a
/// thread of its own: a swap may compile), events wake the inbox.
pub(super) fn follow(app: &Arc<App>, nats: &NatsStorage) {
    let (tx, rx) = std::sync::mpsc::channel();
    let inbox = app.inbox.clone();
    nats.on_change(Box::new(move |change| match change {
        Change::Step { shop, step } => {
            let _ = tx.send((shop, step));
        }
        Change::Event => inbox.wake(),
    }));
    // Weak: the store holds this hook, and the deployer holds the store.
    let deployer = Arc::downgrade(&app.deployer);
    std::thread::Builder::new()
        .name("kefu-follow".into())
        .spawn(move || {
            while let Ok((shop, step)) = rx.recv() {
                match deployer.upgrade() {
                    Some(deployer) => deployer.follow(&shop, step),
                    None => return,
                }
            }
        })
        .expect("spawn the deploy follower");
}

/// Run the shared background work while this node holds the lease, until
/// `stop`.
pub(super) fn lead_while_leased(app: Arc<App>, nats: Arc<NatsStorage>, stop: Arc<AtomicBool>) {
    metrics::gauge!("kefu_cluster_leader").set(0.0);
    type Running = Option<(Arc<AtomicBool>, tokio::task::JoinHandle<()>)>;
    let end = |running: &mut Running| {
        if let Some((mine, retention)) = running.take() {
            mine.store(true, Ordering::Relaxed);
            retention.abort();
        }
    };
    tokio::spawn(async move {
        let mut running: Running = None;
        let mut tick = tokio::time::interval(LOOK_EVERY);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            match (nats.leads(), running.is_some()) {
                (true, false) => {
                    let mine = Arc::new(AtomicBool::new(false));
                    let retention = app.start_shared_work(mine.clone());
                    tracing::info!("running the shared background work");
                    metrics::gauge!("kefu_cluster_leader").set(1.0);
                    running = Some((mine, retention));
                }
                (false, true) => {
                    end(&mut running);
                    metrics::gauge!("kefu_cluster_leader").set(0.0);
                    tracing::warn!(
                        "stopped the shared background work: another node holds the lease"
                    );
                }
                _ => {}
            }
        }
        end(&mut running);
    });
}
