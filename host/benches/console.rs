//! What a console page costs with a large decision log: every page, signed
//! in as the admin, over a shop with N logged decisions (default
//! 1,000,000, over the last 30 days, 50,000 buyers, one refund record in
//! twenty), against the same page over an empty shop in the same run,
//! alternating. Prints each page's median and p95 server time (the router
//! called in process: no socket) and the ratio to the empty shop's.
//! Target (#25): every page ≤ 50 ms.
//!
//! cargo bench -p kefu --bench console [-- N]

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use kefu::app::{App, Env, ServerConfig};
use kefu::storage_types::{Decision, DecisionLog, Effects, Ids, RefundRecord};
use kefu::{SledStorage, Step};
use serde_json::value::RawValue;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const ROUNDS: usize = 30;

fn fill(data: &Path, n: u64) {
    let store = SledStorage::open(data).unwrap();
    let refund: serde_json::Value = serde_json::from_str(include_str!(
        "../../examples/requests/refund-policy/no-reason.json"
    ))
    .unwrap();
    let decision: kefu::types::RefundDecision = serde_json::from_value(serde_json::json!({
        "outcome": "Approve", "amount": 12800, "return_required": true,
        "return_shipping": "Buyer", "message": "亲，已同意退款"
    }))
    .unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let span = 30 * 86_400_000i64;
    let started = Instant::now();
    for i in 0..n {
        let at_ms = now - span + (i as i64 * span) / n as i64;
        let customer = format!("buyer-{}", i % 50_000);
        let order = format!("T2026{i:08}");
        let mut input = refund.clone();
        input["customer"]["id"] = customer.clone().into();
        input["order"]["id"] = order.clone().into();
        let step = [
            Step::Greeting,
            Step::RefundPolicy,
            Step::OrderConfirmation,
            Step::RevisitPlanner,
        ][(i % 4) as usize];
        let id = store.next_id().unwrap();
        let d = Decision {
            id,
            shop: "big".into(),
            step,
            digest: "ea69b2ce5401de90901d37364b7ecaf351d8bdeff1ec666f3c077de0ac28f29a".into(),
            version: 1,
            at_ms,
            now: at_ms / 1000,
            input: RawValue::from_string(input.to_string()).unwrap(),
            output: Some(RawValue::from_string(serde_json::to_string(&decision).unwrap()).unwrap()),
            error: None,
            duration_us: 900 + i % 400,
            canary: false,
            fallback: None,
            state_reads: Vec::new(),
            customer: customer.clone(),
            order: Some(order.clone()),
            logs: Vec::new(),
            event: None,
        };
        let effects = match i % 20 {
            1 => Effects::Refund(RefundRecord {
                id: store.next_id().unwrap(),
                shop: "big".into(),
                order_id: order,
                buyer_id: customer,
                at_ms,
                reason: kefu::types::RefundReason::NoReason,
                kind: kefu::types::RefundKind::ReturnAndRefund,
                requested: 12800,
                decision: decision.clone(),
                decision_id: id,
            }),
            _ => Effects::None,
        };
        store.record_decision(&d, &effects).unwrap();
        if i > 0 && i % 200_000 == 0 {
            eprintln!(
                "  {i} decisions written ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    }
    kefu::storage_types::Durable::flush(&store).unwrap();
    eprintln!(
        "{n} decisions written in {:.0} s",
        started.elapsed().as_secs_f64()
    );
}

/// The app over `root` (shop folder `big` in `root/shops`), signed in:
/// its router and the session cookie.
async fn open(root: &Path) -> (Arc<App>, Router, String) {
    std::fs::create_dir_all(root.join("shops/big")).unwrap();
    std::fs::write(
        root.join("shops/big/shop.toml"),
        "name = \"大店\"\napi_key_env = \"KEY\"\n",
    )
    .unwrap();
    let config = ServerConfig {
        data_dir: root.join("data"),
        shops_dir: root.join("shops"),
        admin_token_env: "ADMIN".into(),
        ..ServerConfig::default()
    };
    let env: Env = Arc::new(|name: &str| match name {
        "ADMIN" => Some("admin".into()),
        "KEY" => Some("key".into()),
        _ => None,
    });
    let app = App::open(config, env).await.unwrap();
    let router = kefu::server::router(app.clone());
    let form = router
        .clone()
        .oneshot(
            Request::builder()
                .uri("/console/sign-in")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let csrf = form.headers()[header::SET_COOKIE].to_str().unwrap();
    let csrf = csrf
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let signed = router
        .clone()
        .oneshot(
            Request::builder()
                .method(Method::POST)
                .uri("/console/sign-in")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("kefu_sign_in={csrf}"))
                .body(Body::from(format!("key=admin&csrf={csrf}")))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    let session = signed.headers()[header::SET_COOKIE].to_str().unwrap();
    let session = session.split(';').next().unwrap().to_string();
    (app, router, session)
}

/// One page's time; `must_answer` or a 404 is fine (the empty shop has
/// no decision to open).
async fn time(router: &Router, cookie: &str, path: &str, must_answer: bool) -> Duration {
    let started = Instant::now();
    let resp = router
        .clone()
        .oneshot(
            Request::builder()
                .uri(path)
                .header(header::COOKIE, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        status.is_success() || (!must_answer && status == 404),
        "{path}: {status} {}",
        String::from_utf8_lossy(&body)
    );
    took
}

fn ms(mut times: Vec<Duration>) -> (f64, f64) {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.95))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let big = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    fill(&big.path().join("data"), n);
    let (_big_app, big_router, big_cookie) = open(big.path()).await;
    let (_empty_app, empty_router, empty_cookie) = open(empty.path()).await;
    // A decision in the middle of the log, to open.
    let middle = _big_app
        .decisions(&kefu::storage_types::DecisionQuery {
            shop: "big".into(),
            customer: Some("buyer-25000".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .pop()
        .map(|d| format!("{}-{}", d.at_ms, d.id))
        .unwrap_or_else(|| "0-0".into());
    let pages = [
        "/console".to_string(),
        "/console/shops/big".into(),
        "/console/shops/big/steps/refund-policy".into(),
        "/console/shops/big/decisions".into(),
        "/console/shops/big/decisions?customer=buyer-25000".into(),
        format!("/console/shops/big/decisions?order=T2026{:08}", n / 2),
        "/console/shops/big/decisions?step=refund-policy".into(),
        "/console/shops/big/decisions?step=workflow".into(),
        format!("/console/shops/big/decisions/{middle}"),
        "/console/shops/big/timeline?customer=buyer-25000".into(),
        "/console/shops/big/revisits".into(),
        "/console/shops/big/kpis?period=month".into(),
        "/console/audit".into(),
    ];
    println!("console pages, {n} decisions vs an empty shop, {ROUNDS} rounds alternating (ms):");
    println!(
        "{:<58} {:>8} {:>8} {:>8} {:>8}",
        "page", "p50", "p95", "empty", "ratio"
    );
    let mut worst: f64 = 0.0;
    for path in &pages {
        let (mut full, mut none) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS + 3 {
            let a = time(&big_router, &big_cookie, path, true).await;
            let b = time(&empty_router, &empty_cookie, path, false).await;
            if round >= 3 {
                full.push(a);
                none.push(b);
            }
        }
        let (p50, p95) = ms(full);
        let (e50, _) = ms(none);
        worst = worst.max(p95);
        println!(
            "{path:<58} {p50:>8.2} {p95:>8.2} {e50:>8.2} {:>7.1}×",
            p50 / e50
        );
    }
    println!("slowest page p95: {worst:.2} ms (target ≤ 50 ms)");
}
