//! The floor kefu is measured against (#29, `tests/load/floors.sh`): a
//! minimal axum server answering kefu's greeting route the way kefu does
//! — the shop looked up, the bearer key checked against its SHA-256, the
//! JSON request parsed, the same answer shape — with the default greeting
//! rule compiled natively instead of run in a sandbox. With `--durable
//! DIR` it also logs each decision in kefu's own sled store through
//! kefu's own group commit before it answers ("floor+sled").
//!
//!   cargo run --release -p kefu --example floor -- SHOPS KEY [--durable DIR]
//!
//! Prints `floor listening on http://ADDR` once it listens.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kefu::app::Committer;
use kefu::storage_types::{Decision, DecisionLog, Effects, Ids};
use kefu::{SledStorage, Step};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

struct Floor {
    shops: HashSet<String>,
    key_sha256: [u8; 32],
    ids: AtomicU64,
    log: Option<(Arc<SledStorage>, Committer)>,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

async fn greeting(
    State(floor): State<Arc<Floor>>,
    Path(shop): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !floor.shops.contains(&shop) {
        return error(StatusCode::NOT_FOUND, "unknown_shop", "no such shop");
    }
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(key) = key else {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "no key");
    };
    let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if digest != floor.key_sha256 {
        return error(StatusCode::FORBIDDEN, "forbidden", "not this shop's key");
    }
    let Ok(request) = serde_json::from_slice(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not a greeting request",
        );
    };
    let now = chrono::Utc::now().timestamp();
    let started = std::time::Instant::now();
    let output = match kefu_greeting::run("{}", &request, now) {
        Ok(output) => output,
        Err(e) => return error(StatusCode::BAD_GATEWAY, "plugin_error", &e),
    };
    let output = serde_json::value::to_raw_value(&output).expect("a reply serializes");
    let id = match &floor.log {
        // kefu's ids come from the store.
        Some((storage, _)) => match storage.next_id() {
            Ok(id) => id,
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_error",
                    &e.to_string(),
                );
            }
        },
        None => floor.ids.fetch_add(1, Ordering::Relaxed),
    };
    if let Some((storage, committer)) = &floor.log {
        let decision = Decision {
            id,
            shop: shop.clone(),
            step: Step::Greeting,
            digest: "native".into(),
            version: 1,
            at_ms: chrono::Utc::now().timestamp_millis(),
            now,
            input: serde_json::value::RawValue::from_string(
                String::from_utf8_lossy(&body).into_owned(),
            )
            .expect("parsed above"),
            output: Some(output.clone()),
            error: None,
            duration_us: started.elapsed().as_micros() as u64,
            canary: false,
            fallback: None,
            state_reads: Vec::new(),
            customer: String::new(),
            order: None,
            logs: Vec::new(),
            event: None,
        };
        if let Err(e) = storage.record_decision(&decision, &Effects::None) {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_error",
                &e.to_string(),
            );
        }
        if let Err(e) = committer.durable().await {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_error",
                &e.to_string(),
            );
        }
    }
    let answer = json!({
        "decision_id": id,
        "shop": shop,
        "step": "greeting",
        "plugin": {"digest": "native", "version": 1, "source": {"kind": "bundled"}},
        "canary": false,
        "output": output,
    });
    axum::Json(answer).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(shops), Some(key)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: floor SHOPS KEY [--durable DIR]");
    };
    let shops: usize = shops.parse()?;
    let log = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--durable"), Some(dir)) => {
            let storage = Arc::new(SledStorage::open(std::path::Path::new(dir))?);
            let committer = Committer::watching(storage.clone(), std::path::Path::new(dir), None);
            Some((storage, committer))
        }
        _ => None,
    };
    let floor = Arc::new(Floor {
        shops: (1..=shops).map(|i| format!("shop-{i}")).collect(),
        key_sha256: Sha256::digest(key.as_bytes()).into(),
        ids: AtomicU64::new(1),
        log,
    });
    let app = Router::new()
        .route("/v1/shops/{shop}/greeting", post(greeting))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("floor listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
