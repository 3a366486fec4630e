//! `kefu serve`: the HTTP API shops call, on axum and tokio.

mod auth;
mod config;
mod deploy;
mod durability;
mod error;
mod handlers;
mod openapi;
mod placement;
mod quota;
pub mod revisits;
mod service;
mod shops;
mod watch;

pub use config::{ConfigError, ServerConfig};
pub use error::ApiError;
pub use quota::Quotas;

use crate::runtime::{Runtime, RuntimeConfig};
use crate::storage::{SledStorage, Storage};
use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Everything a handler needs.
pub struct App {
    pub runtime: Arc<Runtime>,
    pub registry: Arc<shops::Registry>,
    pub deployer: Arc<deploy::Deployer>,
    pub storage: Arc<dyn Storage>,
    pub committer: durability::Committer,
    /// SHA-256 of the admin token, if one is set.
    pub admin: Option<[u8; 32]>,
    pub metrics: PrometheusHandle,
    pub ready: AtomicBool,
    pub max_body: usize,
    pub quotas: Quotas,
    pub meter: quota::Meter,
    /// `kefu_answer_duration_seconds` of each step, in `Step::ALL` order:
    /// kept rather than looked up by label on every request.
    answer_durations: [metrics::Histogram; crate::step::Step::ALL.len()],
}

impl App {
    /// The answer-duration histogram of `step`.
    pub fn answer_duration(&self, step: crate::step::Step) -> &metrics::Histogram {
        &self.answer_durations[step as usize]
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the data directory {path}: {source} (is another kefu using it?)")]
    Storage {
        path: String,
        source: crate::storage::StorageError,
    },
    #[error("cannot start the plugin runtime: {0}")]
    Runtime(#[from] crate::error::LoadError),
    #[error("cannot read the shops directory {path}: {source}")]
    Shops {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot set up metrics: {0}")]
    Metrics(String),
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Largest component accepted by the deploy API (Python and JavaScript
/// components carry their interpreter: tens of MB).
pub const MAX_COMPONENT_BYTES: usize = 128 << 20;

/// Buckets of the latency histograms (plugin calls, group-commit flushes),
/// in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Buckets of whole answers, finer between 1 and 10 ms where a loaded
/// server's tail lies.
const ANSWER_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.001_5, 0.002, 0.003, 0.004, 0.005, 0.007_5, 0.01, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5,
];

fn install_metrics() -> Result<PrometheusHandle, ServeError> {
    let histograms = [
        ("kefu_call_duration_seconds", LATENCY_BUCKETS),
        ("kefu_flush_duration_seconds", LATENCY_BUCKETS),
        ("kefu_answer_duration_seconds", ANSWER_BUCKETS),
    ];
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histograms {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.into()), buckets)
            .map_err(|e| ServeError::Metrics(e.to_string()))?;
    }
    builder
        .install_recorder()
        .map_err(|e| ServeError::Metrics(e.to_string()))
}

/// The router, for the server and for in-process tests.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.max_body;
    Router::new()
        .route("/healthz", get(handlers::health::healthz))
        .route("/readyz", get(handlers::health::readyz))
        .route("/metrics", get(handlers::health::metrics))
        .route("/v1/plugins", get(handlers::plugins::list))
        .route("/v1/openapi.json", get(handlers::health::openapi))
        .route("/v1/shops/{shop}/refunds", get(handlers::refunds::list))
        .route("/v1/shops/{shop}/revisits", get(handlers::revisits::list))
        .route(
            "/v1/shops/{shop}/revisits/report",
            get(handlers::revisits::report),
        )
        .route(
            "/v1/shops/{shop}/revisits/{id}/outcome",
            post(handlers::revisits::outcome),
        )
        .route(
            "/v1/shops/{shop}/revisits/{id}/cancel",
            post(handlers::revisits::cancel),
        )
        .route(
            "/v1/shops/{shop}/revisit-plans",
            post(handlers::revisits::plans).layer(axum::extract::DefaultBodyLimit::max(64 << 20)),
        )
        .route(
            "/v1/shops/{shop}/customers/{customer}/do-not-contact",
            post(handlers::customers::set).delete(handlers::customers::clear),
        )
        .route("/v1/shops/{shop}/decisions", get(handlers::decisions::list))
        .route("/v1/audit", get(handlers::versions::audit))
        .route(
            "/v1/shops/{shop}/steps/{step}/versions",
            get(handlers::versions::list)
                .post(handlers::versions::deploy)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/rollback",
            post(handlers::versions::rollback),
        )
        .route("/v1/shops/{shop}/{step}", post(handlers::steps::call))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see the README for the API".into())
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// Run the server until SIGINT or SIGTERM.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let storage: Arc<dyn Storage> = Arc::new(
        SledStorage::open_with_cache(&config.data_dir, config.storage_cache_mib << 20)
            .map(|s| s.with_state_quota(config.quotas.state_kib * 1024))
            .map_err(|source| ServeError::Storage {
                path: config.data_dir.display().to_string(),
                source,
            })?,
    );
    let runtime = Arc::new(Runtime::new(RuntimeConfig {
        cache_dir: Some(config.cache_dir()),
        limits: config.limits.clone(),
    })?);
    let metrics = install_metrics()?;
    let registry = Arc::new(shops::Registry::empty());
    let deployer = Arc::new(deploy::Deployer::new(
        runtime.clone(),
        storage.clone(),
        registry.clone(),
    ));
    {
        let deployer = deployer.clone();
        let dir = config.shops_dir.clone();
        let env = |name: &str| std::env::var(name).ok();
        tokio::task::spawn_blocking(move || deployer.load_all(&dir, &env))
            .await
            .map_err(|e| ServeError::Io(std::io::Error::other(e)))?
            .map_err(|source| ServeError::Shops {
                path: config.shops_dir.display().to_string(),
                source,
            })?;
    }
    let _watcher =
        watch::watch(&config.shops_dir, deployer.clone()).map_err(|e| ServeError::Shops {
            path: config.shops_dir.display().to_string(),
            source: std::io::Error::other(e),
        })?;
    let admin = std::env::var(&config.admin_token_env)
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| auth::sha256(t.as_bytes()));
    if admin.is_none() {
        tracing::warn!(var = %config.admin_token_env, "no admin token set: admin endpoints are closed");
    }
    let app = Arc::new(App {
        runtime,
        registry,
        deployer,
        committer: durability::Committer::start(storage.clone()),
        storage: storage.clone(),
        admin,
        metrics,
        ready: AtomicBool::new(false),
        max_body: config.max_body_kib * 1024,
        quotas: config.quotas.clone(),
        meter: quota::Meter::default(),
        answer_durations: crate::step::Step::ALL.map(
            |step| metrics::histogram!("kefu_answer_duration_seconds", "step" => step.world()),
        ),
    });
    spawn_retention(storage.clone(), config.decision_retention_days);
    let stop = Arc::new(AtomicBool::new(false));
    revisits::Scheduler::new(storage.clone(), app.registry.clone()).spawn(stop.clone());
    revisits::spawn_outbox(storage, stop.clone());

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let shops = app.registry.all().len();
    let failures = app.registry.failures().len();
    app.ready.store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(%addr, shops, failures, ready_ms = started.elapsed().as_millis() as u64, "kefu serving");
    println!(
        "kefu listening on http://{addr} ({shops} shops, {failures} load failures, ready in {} ms)",
        started.elapsed().as_millis()
    );
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    app.storage
        .flush()
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    Ok(())
}

/// Prune the decision log hourly, starting now.
fn spawn_retention(storage: Arc<dyn Storage>, days: u64) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = shops::now_ms() - (days as i64) * 86_400_000;
            let storage = storage.clone();
            match tokio::task::spawn_blocking(move || storage.prune_decisions(cutoff)).await {
                Ok(Ok(n)) if n > 0 => tracing::info!(pruned = n, "decision log pruned"),
                Ok(Err(e)) => tracing::error!(error = %e, "decision log pruning failed"),
                _ => {}
            }
        }
    });
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
