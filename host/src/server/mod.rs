//! The HTTP transport over the application core: the router, thin
//! handlers (one file per resource), extractors for access and input, the
//! API's one error type and its OpenAPI description.

mod auth;
mod console;
mod error;
mod extract;
mod handlers;
mod language;
mod openapi;
mod request_id;
mod restart;
pub mod transport;

pub use error::ApiError;
pub use extract::{MAX_COMPONENT_BYTES, MAX_EVENTS_BYTES, MAX_PLANS_BYTES};
pub use request_id::SPAN_TARGET as REQUEST_SPAN_TARGET;

use crate::app::{App, ConfigError, OpenError, ServerConfig, process_env};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("--strict: not serving, {} load failure(s):\n{}", .0.len(), .0.join("\n"))]
    Strict(Vec<String>),
}

/// The router over `app`: what `kefu serve` listens with, and what
/// in-process tests call with `tower::ServiceExt::oneshot`.
pub fn router(app: Arc<App>) -> Router {
    let max_body = app.max_body();
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
            post(handlers::revisits::plans).layer(DefaultBodyLimit::max(MAX_PLANS_BYTES)),
        )
        .route(
            "/v1/shops/{shop}/customers/{customer}/do-not-contact",
            post(handlers::customers::set).delete(handlers::customers::clear),
        )
        .route(
            "/v1/shops/{shop}/customers/{customer}/timeline",
            get(handlers::timeline::customer),
        )
        .route(
            "/v1/shops/{shop}/orders/{order}/timeline",
            get(handlers::timeline::order),
        )
        .route(
            "/v1/shops/{shop}/events",
            post(handlers::events::accept).layer(DefaultBodyLimit::max(MAX_EVENTS_BYTES)),
        )
        .route("/v1/shops/{shop}/events/{id}", get(handlers::events::show))
        .route(
            "/v1/shops/{shop}/events/{id}/retry",
            post(handlers::events::retry),
        )
        .route("/v1/shops/{shop}/actions", get(handlers::actions::list))
        .route(
            "/v1/shops/{shop}/actions/{id}/ack",
            post(handlers::actions::ack),
        )
        .route("/v1/shops/{shop}/webhooks", get(handlers::webhooks::list))
        .route(
            "/v1/shops/{shop}/webhooks/{key}/retry",
            post(handlers::webhooks::retry),
        )
        .route("/v1/shops/{shop}/decisions", get(handlers::decisions::list))
        .route("/v1/audit", get(handlers::versions::audit))
        .route(
            "/v1/shops/{shop}/steps/{step}/versions",
            get(handlers::versions::list)
                .post(handlers::versions::deploy)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/canary",
            get(handlers::canary::show)
                .post(handlers::canary::start)
                .delete(handlers::canary::abort),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/canary/promote",
            post(handlers::canary::promote),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/replays",
            post(handlers::replays::start).layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/shadow",
            get(handlers::shadow::show)
                .post(handlers::shadow::start)
                .delete(handlers::shadow::stop)
                .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES)),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/shadow/examples/{decision}",
            get(handlers::shadow::example),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/replays/{id}",
            get(handlers::replays::show),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/replays/{id}/examples/{decision}",
            get(handlers::replays::example),
        )
        .route(
            "/v1/shops/{shop}/steps/{step}/rollback",
            post(handlers::versions::rollback),
        )
        .route("/v1/shops/{shop}/{step}", post(handlers::steps::call))
        .merge(console::router())
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see the README for the API".into())
        })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(app)
}

/// A handler that panicked answers 500 `internal_error` in the API's
/// envelope (and is logged), instead of a dropped connection.
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %what, "a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::Internal)
}

/// Listen first, open the application, load the shops while `/readyz`
/// answers "starting" with the progress, start the background work, and
/// serve HTTP until SIGINT or SIGTERM.
///
/// Prints two lines on stdout: `kefu listening on http://ADDR ...` once
/// the port is bound, then `kefu ready ...` once every shop is loaded.
pub async fn serve(config: ServerConfig) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let listen = config.listen;
    let strict = config.strict;
    let http = config.http.clone();
    let listen_error = |source| ServeError::Listen {
        addr: listen.to_string(),
        source,
    };
    // Bind before anything slow: a port in use is said at once, once. A
    // restart in place adopts the socket it was handed instead.
    let listener = match restart::inherited_listener() {
        Some(inherited) => inherited.map_err(listen_error)?,
        None => tokio::net::TcpListener::bind(listen)
            .await
            .map_err(listen_error)?,
    };
    let addr = listener.local_addr()?;
    let serving = config.data_dir.join(SERVING_FILE);
    let app = App::open_unloaded(config, process_env())?;
    // Where this server answers, for tools that find its data dir held
    // (`kefu replay --data`).
    let _ = std::fs::write(&serving, format!("{}\n", reachable_url(addr)));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
    app.on_store_stuck(Box::new(move |reason| {
        restart::in_place(fd, reason);
    }));
    tracing::info!(%addr, "kefu listening; loading shops");
    say(format_args!(
        "kefu listening on http://{addr} (loading shops: /readyz says how far)"
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        tokio::select! { _ = shutdown_signal() => {}, _ = stop_rx => {} }
    };
    let transport = tokio::spawn({
        let router = router(app.clone());
        async move { transport::serve(listener, router, &http, stop).await }
    });
    let loaded = start(&app, strict).await;
    let background = match loaded {
        Ok(background) => background,
        Err(e) => {
            let _ = stop_tx.send(());
            let _ = transport.await;
            return Err(e);
        }
    };
    let (shops, failures) = app.counts();
    app.set_ready();
    // Housekeeping once serving: it reads every shop's versions.
    tokio::spawn({
        let app = app.clone();
        async move { app.tidy().await }
    });
    let ready_ms = started.elapsed().as_millis() as u64;
    tracing::info!(%addr, shops, failures, ready_ms, "kefu ready");
    say(format_args!(
        "kefu ready: {shops} shops, {failures} load failures, in {ready_ms} ms"
    ));
    let _ = transport.await;
    let _ = std::fs::remove_file(&serving);
    drop(background);
    app.durable()
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))?;
    Ok(())
}

/// The file in a data dir that says where the server holding it answers.
pub const SERVING_FILE: &str = "kefu-serving";

/// The URL of the server holding `data_dir`, if one said so.
pub fn serving_url(data_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join(SERVING_FILE)).ok()?;
    let url = text.trim();
    url.starts_with("http://").then(|| url.to_string())
}

/// A URL a client on this machine reaches `addr` at (a server listening
/// on every address answers on loopback).
fn reachable_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    format!("http://{}", std::net::SocketAddr::new(ip, addr.port()))
}

/// A line on standard output, for whoever started the server; nobody
/// reading it any more (a closed pipe, after a restart in place) is no
/// reason to stop.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_fmt(line)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush());
}

/// Load the shops (refusing to go on under `strict` if any failed) and
/// start the background work.
async fn start(app: &Arc<App>, strict: bool) -> Result<crate::app::Background, ServeError> {
    // The watch walks every shop folder: beside the load, not after it.
    let watching = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || app.watch_shops())
    };
    app.load_shops().await?;
    watching
        .await
        .map_err(|e| ServeError::Io(std::io::Error::other(e)))??;
    if strict {
        let failures = app.load_failures();
        if !failures.is_empty() {
            return Err(ServeError::Strict(failures));
        }
    }
    Ok(app.start_background()?)
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

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// A panicking handler answers 500 in the envelope, and the server
    /// goes on.
    #[tokio::test]
    async fn a_panicking_handler_answers_500_internal_error() {
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("boom");
                    }
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                super::panicked,
            ))
            .layer(axum::middleware::from_fn(super::request_id::layer));
        let answer = router
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(answer.status(), 500);
        assert!(answer.headers().contains_key("x-request-id"));
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["error"]["code"], "internal_error");
    }
}
