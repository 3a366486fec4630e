//! The application in process, for tests: `App::open` on a folder's
//! `shops` and `data`, its router called with `oneshot`, no socket.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request};
use kefu::app::{App, Env, ServerConfig};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// Shop `tea`'s key (its `shop.toml` names the variable `KEY_TEA`).
pub const KEY: &str = "key-tea";
/// The admin token.
pub const ADMIN: &str = "admin-token";

pub struct InProc {
    pub app: Arc<App>,
    pub router: Router,
}

impl InProc {
    /// The app over `root/shops`, its data in `root/data`; the variables
    /// `KEY_TEA` ([`KEY`]), `ADMIN` ([`ADMIN`]) and `HOOK` (a webhook
    /// secret) are set.
    pub async fn open(root: &Path) -> InProc {
        Self::open_on(root, None).await
    }

    /// Like [`InProc::open`], on `storage` when given (e.g. a store with
    /// faults armed by the test) instead of the one the app opens.
    pub async fn open_on(root: &Path, storage: Option<Arc<dyn kefu::Storage>>) -> InProc {
        let config = ServerConfig {
            data_dir: root.join("data"),
            shops_dir: root.join("shops"),
            cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("kefu-cache")),
            admin_token_env: "ADMIN".into(),
            ..ServerConfig::default()
        };
        let vars: HashMap<&str, &str> =
            HashMap::from([("KEY_TEA", KEY), ("ADMIN", ADMIN), ("HOOK", "hook-secret")]);
        let env: Env = Arc::new(move |name: &str| vars.get(name).map(|v| v.to_string()));
        let app = match storage {
            Some(storage) => App::open_on(config, env, storage).await,
            None => App::open(config, env).await,
        }
        .expect("the app opens");
        InProc {
            router: kefu::server::router(app.clone()),
            app,
        }
    }

    /// One request with `key`; (status, JSON or text body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// GET with the admin token.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, ADMIN, "application/json", vec![])
            .await
    }
}

/// Wait until an app's store at `data` is free: a dropped app's threads
/// let go of it soon after, not at once.
pub async fn released(data: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while kefu::SledStorage::open(data).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the store stays locked"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
