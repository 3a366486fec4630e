//! The floor kefu is measured against (#29, `tests/load/floors.sh`): a
//! minimal axum server answering kefu's greeting route the way kefu does
//! — the shop looked up, the bearer key checked against its SHA-256, the
//! JSON request parsed, the same answer shape — with the default greeting
//! rule compiled natively instead of run in a sandbox. With `--durable
//! DIR` it also logs each decision in kefu's own sled store through
//! kefu's own group commit before it answers ("floor+sled"). With
//! `--sandbox` the rule is the bundled greeting plugin instead, called in
//! kefu's runtime as kefu calls it (an instance reused per shop, on the
//! request's task): what is left between that and kefu is kefu's own
//! request path ("floor+sled+wasm").
//!
//!   cargo run --release -p kefu --example floor -- SHOPS KEY [--durable DIR] [--sandbox]
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
use kefu::{
    CallContext, MemoryStateStore, ReusePool, Runtime, RuntimeConfig, SledStorage, StateStore,
    Step, StepInput, StepOutput,
};
use serde_json::json;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

// The allocator kefu runs with (host/src/main.rs), so that the floors
// differ from kefu only in what they leave out.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    shops: HashSet<String>,
    key_sha256: [u8; 32],
    ids: AtomicU64,
    log: Option<(Arc<SledStorage>, Committer)>,
    sandbox: Option<Sandbox>,
}

/// The bundled greeting plugin in kefu's runtime: a pool of reused
/// instances per shop, as kefu keeps them.
struct Sandbox {
    runtime: Arc<Runtime>,
    pools: HashMap<String, ReusePool>,
    state: Arc<dyn StateStore>,
}

impl Sandbox {
    fn new(shops: &HashSet<String>) -> anyhow::Result<Self> {
        let runtime = Arc::new(Runtime::new(RuntimeConfig::default())?);
        let plugin = runtime.load(kefu::default_plugin(Step::Greeting), Step::Greeting)?;
        let pools = shops
            .iter()
            .map(|shop| (shop.clone(), ReusePool::new(plugin.clone())))
            .collect();
        Ok(Sandbox {
            runtime,
            pools,
            state: Arc::new(MemoryStateStore::default()),
        })
    }

    /// The plugin's answer for `shop` on `input`, as JSON.
    async fn call(&self, shop: &str, input: &StepInput, now: i64) -> Result<Box<RawValue>, String> {
        let ctx = CallContext {
            shop: shop.to_string(),
            plugin: Step::Greeting.world().to_string(),
            config_json: "{}".into(),
            now,
            state: self.state.clone(),
        };
        let outcome = self.pools[shop].call_async(&self.runtime, ctx, input).await;
        let output: StepOutput = outcome.result.map_err(|e| e.to_string())?;
        Ok(serde_json::value::to_raw_value(&output).expect("a reply serializes"))
    }
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
    let key_hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if key_hash != floor.key_sha256 {
        return error(StatusCode::FORBIDDEN, "forbidden", "not this shop's key");
    }
    let now = chrono::Utc::now().timestamp();
    let started = std::time::Instant::now();
    let not_greeting = || {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "not a greeting request",
        )
    };
    let (digest, answered) = match &floor.sandbox {
        Some(sandbox) => {
            let Ok(input) = Step::Greeting.parse_input(&body) else {
                return not_greeting();
            };
            ("wasm", sandbox.call(&shop, &input, now).await)
        }
        None => {
            let Ok(request) = serde_json::from_slice(&body) else {
                return not_greeting();
            };
            let output = kefu_greeting::run("{}", &request, now).map(|output| {
                serde_json::value::to_raw_value(&output).expect("a reply serializes")
            });
            ("native", output)
        }
    };
    let output = match answered {
        Ok(output) => output,
        Err(e) => return error(StatusCode::BAD_GATEWAY, "plugin_error", &e),
    };
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
            digest: digest.into(),
            version: 1,
            at_ms: chrono::Utc::now().timestamp_millis(),
            now,
            input: RawValue::from_string(String::from_utf8_lossy(&body).into_owned())
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
        "plugin": {"digest": digest, "version": 1, "source": {"kind": "bundled"}},
        "canary": false,
        "output": output,
    });
    axum::Json(answer).into_response()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(shops), Some(key)) = (args.first(), args.get(1)) else {
        anyhow::bail!("usage: floor SHOPS KEY [--durable DIR] [--sandbox]");
    };
    let shops: usize = shops.parse()?;
    let (mut log, mut sandbox) = (None, false);
    let mut rest = args[2..].iter();
    while let Some(arg) = rest.next() {
        match (arg.as_str(), rest.clone().next()) {
            ("--durable", Some(dir)) => {
                rest.next();
                let dir = std::path::Path::new(dir);
                let storage = Arc::new(SledStorage::open(dir)?);
                let committer = Committer::watching(storage.clone(), dir, None);
                log = Some((storage, committer));
            }
            ("--sandbox", _) => sandbox = true,
            _ => anyhow::bail!("usage: floor SHOPS KEY [--durable DIR] [--sandbox]"),
        }
    }
    let shops: HashSet<String> = (1..=shops).map(|i| format!("shop-{i}")).collect();
    let sandbox = sandbox.then(|| Sandbox::new(&shops)).transpose()?;
    let floor = Arc::new(Floor {
        shops,
        key_sha256: Sha256::digest(key.as_bytes()).into(),
        ids: AtomicU64::new(1),
        log,
        sandbox,
    });
    let app = Router::new()
        .route("/v1/shops/{shop}/greeting", post(greeting))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("floor listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
