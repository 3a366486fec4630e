//! The application core: the shops being served and their plugin
//! versions, step calls (quotas, placement, the decision log, durability),
//! deploys and rollbacks, workflow events, revisits and the webhook
//! outbox. It knows nothing of HTTP: `crate::server` is one transport over
//! it, and tests drive it directly through [`App::open`].

mod access;
mod canaries;
mod cluster;
pub mod config;
mod deploy;
mod durability;
mod events;
mod kpis;
mod listings;
pub mod metrics;
mod overview;
mod placement;
mod quota;
mod recent;
mod registry;
mod replay;
mod replays;
mod revisits;
mod rollout;
mod run;
mod said;
mod startup;
mod views;
mod watch;

pub use access::{AccessError, Caller, KeyOwner};
pub use config::{
    Backend, ConfigError, InstanceMode, ServerConfig, ShopSpec, StepSpec, StorageConfig,
};
pub use deploy::{CanaryPlan, CanaryView, DeployError, DeployRequest};
pub use durability::Committer;
pub use events::input::{
    HOST_TYPES as EVENT_HOST_TYPES, MAX_BATCH as MAX_EVENTS, TYPES as EVENT_TYPES,
};
pub use events::simulate::{SimulateError, Simulation, simulate};
pub use events::{
    Accepted, ActionView, EventError, EventView, MAX_FLOW_CALLS, MAX_STEP_RUNS, Timeline,
    TimelineEntry,
};
pub use kpis::{Day as KpiDay, Kpis, MAX_REFUNDS, OUTCOMES as REFUND_OUTCOMES, day_start};
pub use listings::{AuditView, DecisionView, OutcomeView, RefundView, RevisitView};
pub use overview::{Overview, ShopSummary, StepSummary};
pub use quota::{QuotaExceeded, Quotas};
pub use registry::{LoadFailure, PluginSource, Shop, now_ms};
pub use replay::jobs::JobView as ReplayView;
pub use replay::shadow::ShadowView;
pub use replay::{
    ChangeGroup as ReplayGroup, Filters as ReplayFilters, Progress as ReplayProgress,
    ReplayExample, ReplayReport,
};
pub use replays::{ReplayDirError, ReplaySource, replay_dir};
pub use revisits::{
    DeliveryView, MAX_BATCH, OutcomeInput, PlanResult, PlansReport, Report, RevisitError,
    Scheduler, TICK as SCHEDULER_TICK, WebhookError,
};
pub use run::{PluginInfo, StepAnswer, StepCall, StepError};
pub use startup::Starting;
pub use views::{ActivePluginView, PluginsView, VersionView, VersionsView};

use crate::error::LoadError;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::steps::Step;
use crate::storage::{Actor, Reopening, SledStorage, Storage, StorageError};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A compiled artifact no version runs is deleted at start once unused
/// for this long (a cache directory may be shared with other servers).
const CACHE_UNUSED_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Looks up environment variables (shop keys, the admin token): the
/// process environment when serving, a map in tests.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> Env {
    Arc::new(|name: &str| std::env::var(name).ok())
}

/// Why the application could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    // `cause`, not `source`: the message says it, and a chain printer
    // (anyhow's `{:#}`) would say it twice.
    #[error("cannot open the data directory {path}: {cause}")]
    Storage { path: String, cause: StorageError },
    #[error("cannot open the NATS store at {url}: {cause}")]
    Nats { url: String, cause: StorageError },
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(#[from] LoadError),
    #[error("cannot read the shops directory {path}: {source}")]
    Shops {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
}

/// The running application. Built by [`App::open`]; shared behind an
/// `Arc` by every transport and background worker.
pub struct App {
    config: ServerConfig,
    runtime: Arc<Runtime>,
    registry: Arc<registry::Registry>,
    deployer: Arc<deploy::Deployer>,
    storage: Arc<dyn Storage>,
    /// The NATS store, when the server shares one with other nodes.
    cluster: Option<Arc<crate::storage::NatsStorage>>,
    committer: durability::Committer,
    /// SHA-256 of the admin token, if one is set.
    admin: Option<[u8; 32]>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Loading the shop folders, then ready.
    startup: Arc<startup::Progress>,
    meter: quota::Meter,
    /// `kefu_answer_duration_seconds` of each step, in `Step::ALL` order:
    /// kept rather than looked up by label on every request.
    answer_durations: [::metrics::Histogram; Step::ALL.len()],
    /// Replays started through the API.
    replays: replay::jobs::Jobs,
    /// The engine replays and shadows run on (see `replays`).
    background: std::sync::OnceLock<Arc<Runtime>>,
    /// The workflow inbox's wake-up and its busy subjects.
    inbox: Arc<events::worker::Inbox>,
    /// The shops folder's watch, once started and until the background
    /// workers hold it.
    watcher: std::sync::Mutex<Option<watch::ShopWatcher>>,
}

/// The background workers of an open app: the shops-folder watcher, the
/// revisit scheduler, the webhook outbox and decision-log retention. They
/// stop when this is dropped.
pub struct Background {
    stop: Arc<AtomicBool>,
    _watcher: watch::ShopWatcher,
    /// Decision-log retention, when this node runs it unconditionally
    /// (one node on sled; on NATS it runs with the lease).
    retention: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(retention) = &self.retention {
            retention.abort();
        }
    }
}

impl App {
    /// Open the store, start the runtime and load every shop folder. Shop
    /// keys and the admin token are read through `env`. Nothing runs in the
    /// background until [`App::start_background`].
    pub async fn open(config: ServerConfig, env: Env) -> Result<Arc<App>, OpenError> {
        let app = App::open_unloaded(config, env)?;
        app.load_shops().await?;
        app.tidy().await;
        Ok(app)
    }

    /// Load every shop folder (blocking work, on the blocking pool); the
    /// progress shows in [`App::starting`] and the log.
    pub async fn load_shops(self: &Arc<Self>) -> Result<(), OpenError> {
        let deployer = self.deployer.clone();
        let progress = self.startup.clone();
        let dir = self.config.shops_dir.clone();
        let shops_error = |source| OpenError::Shops {
            path: self.config.shops_dir.display().to_string(),
            source,
        };
        tokio::task::spawn_blocking(move || deployer.load_all(&dir, &progress))
            .await
            .map_err(|e| shops_error(std::io::Error::other(e)))?
            .map_err(shops_error)?;
        self.startup.finish();
        Ok(())
    }

    /// Housekeeping after the shops are loaded (blocking work, on the
    /// blocking pool): versions beyond `keep_versions` and compiled
    /// artifacts nothing runs are let go. `kefu serve` runs it once it is
    /// ready; [`App::open`] before it returns.
    pub async fn tidy(self: &Arc<Self>) {
        let deployer = self.deployer.clone();
        let _ = tokio::task::spawn_blocking(move || deployer.tidy(CACHE_UNUSED_FOR)).await;
    }

    /// Watch the shops folder (a change reloads its shop) from now on: a
    /// transport may start it while the shops load, since it walks every
    /// folder. [`App::start_background`] starts it if nobody did.
    pub fn watch_shops(&self) -> Result<(), OpenError> {
        let mut watcher = self.watcher.lock().unwrap_or_else(|e| e.into_inner());
        if watcher.is_none() {
            *watcher = Some(
                watch::watch(&self.config.shops_dir, self.deployer.clone()).map_err(|e| {
                    OpenError::Shops {
                        path: self.config.shops_dir.display().to_string(),
                        source: std::io::Error::other(e),
                    }
                })?,
            );
        }
        Ok(())
    }

    /// Open the store and start the runtime, serving no shop yet: what a
    /// transport that listens before the shops are loaded opens first
    /// (then [`App::load_shops`]).
    pub fn open_unloaded(config: ServerConfig, env: Env) -> Result<Arc<App>, OpenError> {
        if config.storage.backend == config::Backend::Nats {
            let nats = cluster::open(&config, &env).map_err(|cause| OpenError::Nats {
                url: config.storage.url.clone(),
                cause,
            })?;
            let nats = Arc::new(nats);
            return Self::open_with(config, env, nats.clone(), Some(nats));
        }
        let (dir, cache) = (config.data_dir.clone(), config.storage_cache_mib << 20);
        let quota = config.quotas.state_kib * 1024;
        let retention_ms = config.decision_retention_ms();
        let storage = Reopening::open(move || {
            let store = SledStorage::open_with_cache(&dir, cache)?
                .with_state_quota(quota)
                .with_decision_retention(retention_ms);
            Ok(Arc::new(store) as Arc<dyn Storage>)
        })
        .map_err(|cause| OpenError::Storage {
            path: config.data_dir.display().to_string(),
            cause,
        })?;
        Self::open_unloaded_on(config, env, Arc::new(storage))
    }

    /// Open the app on a store opened by the caller (a store in front of
    /// another, e.g. [`crate::storage::Faults`] in tests), then load every
    /// shop folder.
    pub async fn open_on(
        config: ServerConfig,
        env: Env,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<App>, OpenError> {
        let app = App::open_unloaded_on(config, env, storage)?;
        app.load_shops().await?;
        app.tidy().await;
        Ok(app)
    }

    /// [`App::open_unloaded`] on a store opened by the caller.
    pub fn open_unloaded_on(
        config: ServerConfig,
        env: Env,
        storage: Arc<dyn Storage>,
    ) -> Result<Arc<App>, OpenError> {
        Self::open_with(config, env, storage, None)
    }

    fn open_with(
        config: ServerConfig,
        env: Env,
        storage: Arc<dyn Storage>,
        cluster: Option<Arc<crate::storage::NatsStorage>>,
    ) -> Result<Arc<App>, OpenError> {
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            cache_dir: Some(config.cache_dir()),
            limits: config.limits.clone(),
            compile_worker: config.compile_worker.clone(),
        })?);
        let metrics = metrics::handle().map_err(OpenError::Metrics)?;
        let registry = Arc::new(registry::Registry::empty());
        let deployer = Arc::new(deploy::Deployer::new(
            runtime.clone(),
            storage.clone(),
            registry.clone(),
            env.clone(),
            config.keep_versions,
        ));
        let admin = env(&config.admin_token_env)
            .filter(|t| !t.is_empty())
            .map(|t| access::sha256(t.as_bytes()));
        if admin.is_none() {
            tracing::warn!(var = %config.admin_token_env, "no admin token set: admin endpoints are closed");
        }
        Ok(Arc::new(App {
            committer: durability::Committer::watching(
                storage.clone(),
                &config.data_dir,
                config.disk_reserve_mib.map(|mib| mib << 20),
            ),
            config,
            runtime,
            registry,
            deployer,
            storage,
            cluster,
            admin,
            metrics,
            startup: Default::default(),
            meter: quota::Meter::default(),
            replays: Default::default(),
            background: Default::default(),
            inbox: Default::default(),
            watcher: Default::default(),
            answer_durations: Step::ALL.map(
                |step| ::metrics::histogram!("kefu_answer_duration_seconds", "step" => step.world()),
            ),
        }))
    }

    /// Start the background workers; they stop when the handle is dropped.
    /// Must be called within a tokio runtime.
    pub fn start_background(self: &Arc<Self>) -> Result<Background, OpenError> {
        let stop = Arc::new(AtomicBool::new(false));
        self.watch_shops()?;
        let watcher = self
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .expect("watching since the line above");
        let retention = match &self.cluster {
            None => Some(self.start_shared_work(stop.clone())),
            Some(nats) => {
                cluster::follow(self, nats);
                cluster::lead_while_leased(self.clone(), nats.clone(), stop.clone());
                None
            }
        };
        Ok(Background {
            stop,
            _watcher: watcher,
            retention,
        })
    }

    /// The work one node does for all (the only node on sled, the
    /// lease's holder on NATS), until `stop`: revisits, webhooks, canary
    /// analysis, the workflow inbox and timers; and retention (the
    /// handle: abort it to stop).
    fn start_shared_work(self: &Arc<Self>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
        Scheduler::new(self.storage.clone(), self.registry.clone()).spawn(stop.clone());
        Arc::new(revisits::Deliverer::new(
            self.storage.clone(),
            self.registry.clone(),
            self.config.webhooks.clone(),
        ))
        .spawn(stop.clone());
        spawn_canary_ticker(self.clone(), stop.clone());
        self.start_events(stop);
        spawn_retention(self.storage.clone(), self.config.decision_retention_ms())
    }

    /// What to do when the store failed and cannot be opened again in
    /// process (sled's own threads still hold it): `kefu serve` restarts
    /// itself in place. Without it, storage stays failing and the log
    /// says a restart is needed.
    pub fn on_store_stuck(&self, restart: durability::Restart) {
        self.committer.on_store_stuck(restart);
    }

    /// The config the app was opened with.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Mark the app ready (shops loaded, transport listening).
    pub fn set_ready(&self) {
        self.startup.set_ready();
    }

    pub fn is_ready(&self) -> bool {
        self.startup.is_ready()
    }

    /// How far loading the shops got, while they load.
    pub fn starting(&self) -> Option<Starting> {
        self.startup.starting()
    }

    /// The shop `id`, if it is served.
    pub fn shop(&self, id: &str) -> Option<Arc<Shop>> {
        self.registry.get(id)
    }

    /// The ids of every shop served, sorted.
    pub fn shop_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.registry.all().keys().cloned().collect();
        ids.sort();
        ids
    }

    /// How many shops are served, and how many loads failed.
    pub fn counts(&self) -> (usize, usize) {
        (self.registry.all().len(), self.registry.failure_count())
    }

    /// Every load failure kept, one line each.
    pub fn load_failures(&self) -> Vec<String> {
        self.registry
            .failures()
            .into_iter()
            .map(|f| match f.step {
                Some(step) => format!("{} {step}: {}", f.shop, f.reason),
                None => format!("{}: {}", f.shop, f.reason),
            })
            .collect()
    }

    /// The shops serving while their folder does not load, with why,
    /// sorted.
    pub fn degraded_shops(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .registry
            .all()
            .values()
            .filter_map(|s| s.degraded.clone().map(|reason| (s.id.clone(), reason)))
            .collect();
        out.sort();
        out
    }

    /// SHA-256 of the admin token, if one is set.
    pub fn admin_digest(&self) -> Option<&[u8; 32]> {
        self.admin.as_ref()
    }

    /// Largest request body, in bytes.
    pub fn max_body(&self) -> usize {
        self.config.max_body_kib * 1024
    }

    /// The answer-duration histogram of `step`.
    pub fn answer_duration(&self, step: Step) -> &::metrics::Histogram {
        &self.answer_durations[step as usize]
    }

    /// Group-commit flushes so far.
    pub fn flushes(&self) -> u64 {
        self.committer.flushes()
    }

    /// Wait until everything written so far is durable.
    pub async fn durable(&self) -> Result<(), StorageError> {
        self.committer.durable().await
    }

    /// Why storage cannot write now, if it cannot (step requests are
    /// refused at once meanwhile, and `/readyz` says so).
    pub fn storage_failing(&self) -> Option<String> {
        if let Some(why) = self.cluster.as_ref().and_then(|n| n.unavailable()) {
            return Some(why);
        }
        self.committer.failing()
    }

    /// Whether this node runs the shared background work: always on sled,
    /// while it holds the lease on NATS.
    pub fn leads(&self) -> bool {
        self.cluster.as_ref().is_none_or(|n| n.leads())
    }

    /// The Prometheus text of every metric, with the shop, process and
    /// backlog gauges counted now (blocking: it reads storage).
    pub fn render_metrics(&self) -> String {
        metrics::record_shop_gauges(&self.registry);
        ::metrics::gauge!("kefu_reused_instances_idle")
            .set(self.runtime.idle_reused_instances() as f64);
        metrics::record_process_gauges();
        metrics::record_backlog_gauges(self.storage.as_ref(), now_ms());
        self.metrics.render()
    }

    /// Deploy an uploaded component as the next version of a shop's step
    /// (blocking: it compiles).
    pub fn deploy(
        &self,
        shop: &str,
        step: Step,
        request: DeployRequest,
        actor: Actor,
    ) -> Result<VersionView, DeployError> {
        let canary = request.canary.is_some();
        let record = self.deployer.deploy_api(shop, step, request, actor)?;
        Ok(match canary {
            true => VersionView::canary(&record),
            false => VersionView::active(&record),
        })
    }

    /// Roll a shop's step back to version `to`, or the one before the
    /// active one (blocking: it may compile).
    pub fn rollback(
        &self,
        shop: &str,
        step: Step,
        to: Option<u64>,
        actor: Actor,
    ) -> Result<VersionView, DeployError> {
        let record = self.deployer.rollback(shop, step, to, actor)?;
        Ok(VersionView::active(&record))
    }

    /// Reload one shop folder now, as the watcher does after a change.
    pub fn reload_shop(&self, dir: &std::path::Path, actor: Actor) {
        self.deployer.reload_shop(dir, actor);
    }

    /// Record an agent's attempt at revisit `id` of `shop`, now, and note
    /// it in the audit as `actor`'s; durable when it returns.
    pub async fn record_outcome(
        &self,
        shop: &str,
        id: u64,
        input: OutcomeInput,
        actor: Actor,
    ) -> Result<RevisitView, RevisitError> {
        let at = chrono::Utc::now().timestamp();
        let mut reason = format!("revisit {id}: {}", input.result);
        if let Some(s) = input.satisfaction {
            reason += &format!(", satisfaction {s}");
        }
        if !input.agent.is_empty() {
            reason += &format!(", agent {}", input.agent);
        }
        let revisit = revisits::record_outcome(self.storage.as_ref(), shop, id, at, input)?;
        let event = self.deployer.event(
            shop,
            crate::storage::AuditAction::RevisitOutcome,
            crate::storage::VersionSource::None,
            actor,
            &reason,
        );
        self.deployer.audit(event);
        self.durable().await?;
        Ok(revisit.into())
    }

    /// Cancel revisit `id` of `shop`; durable when it returns.
    pub async fn cancel_revisit(&self, shop: &str, id: u64) -> Result<RevisitView, RevisitError> {
        let revisit = revisits::cancel(self.storage.as_ref(), shop, id)?;
        self.durable().await?;
        Ok(revisit.into())
    }

    /// A shop's undelivered webhooks (only the dead-lettered ones when
    /// `dead_only`).
    pub fn webhooks(&self, shop: &str, dead_only: bool) -> Result<Vec<DeliveryView>, StorageError> {
        revisits::webhooks::list(self.storage.as_ref(), shop, dead_only)
    }

    /// Try a webhook delivery again now; durable when it returns.
    pub async fn retry_webhook(&self, shop: &str, key: &str) -> Result<DeliveryView, WebhookError> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let view = revisits::webhooks::retry(self.storage.as_ref(), shop, key, now_ms)?;
        self.durable().await?;
        Ok(view)
    }

    /// Mark a customer do-not-contact (cancelling their open revisits, and
    /// how many) or clear the mark; durable when it returns.
    pub async fn set_do_not_contact(
        &self,
        shop: &str,
        customer: &str,
        on: bool,
    ) -> Result<usize, StorageError> {
        let cancelled = if on {
            revisits::do_not_contact(self.storage.as_ref(), shop, customer)?
        } else {
            self.storage.set_do_not_contact(shop, customer, false)?;
            0
        };
        self.durable().await?;
        Ok(cancelled)
    }

    /// The revisit report of `shop` over revisits due in `[from, to)`.
    pub fn revisit_report(&self, shop: &str, from: i64, to: i64) -> Result<Report, StorageError> {
        revisits::report(self.storage.as_ref(), shop, from, to)
    }
}

/// Look at every canary each second (see `deploy::canary`), until `stop`.
fn spawn_canary_ticker(app: Arc<App>, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let app = app.clone();
            let _ = tokio::task::spawn_blocking(move || app.tick_canaries()).await;
        }
    });
}

/// Prune the decision log (and processed events) every twentieth of the
/// retention, at most hourly, starting now.
fn spawn_retention(storage: Arc<dyn Storage>, retention_ms: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_millis(retention_ms / 20)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let cutoff = now_ms().saturating_sub(i64::try_from(retention_ms).unwrap_or(i64::MAX));
            let storage = storage.clone();
            let pruned = tokio::task::spawn_blocking(move || {
                let events = storage.prune_events(cutoff)?;
                if events > 0 {
                    tracing::info!(pruned = events, "processed events pruned");
                }
                storage.prune_decisions(cutoff)
            });
            match pruned.await {
                Ok(Ok(n)) if n > 0 => tracing::info!(pruned = n, "decision log pruned"),
                Ok(Err(e)) => tracing::error!(error = %e, "decision log pruning failed"),
                _ => {}
            }
        }
    })
}
