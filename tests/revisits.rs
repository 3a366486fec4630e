//! Revisits through the real binary: planning in batches, webhooks with
//! idempotency keys, outcomes, do-not-contact, and a kill -9 in the middle
//! of firing 10,000 revisits.

mod support;

use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::server::{Server, get, post, write_config};

const KEY: &str = "test-key-lab";

/// A webhook receiver on 127.0.0.1: counts deliveries per idempotency key
/// and remembers when each key first arrived and the revisit's due time.
/// Per idempotency key: (deliveries, first arrival in unix seconds, due_at).
type Seen = HashMap<String, (u32, f64, i64)>;

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Seen>>,
}

impl Receiver {
    fn start() -> (Receiver, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let receiver = Receiver::default();
        let seen = receiver.seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut key, mut length, mut ended) = (String::new(), 0usize, false);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if line == "\r\n" {
                        ended = true;
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("idempotency-key:") {
                        key = v.trim().to_string();
                    } else if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                // A sender killed mid-request leaves a cut request: not a
                // delivery (it got no answer and will send it again).
                let mut body = vec![0; length];
                if !ended || key.is_empty() || reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let due = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|b| b["revisit"]["due_at"].as_i64())
                    .unwrap_or(0);
                let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
                let mut seen = seen.lock().unwrap();
                let entry = seen.entry(key).or_insert((0, now, due));
                entry.0 += 1;
                drop(seen);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        (receiver, url)
    }

    fn distinct(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A shop `crm` whose revisit planner reminds unpaid orders at once, with
/// a webhook.
fn crm_server(dir: &std::path::Path, webhook: &str) -> Server {
    let shops = dir.join("shops");
    std::fs::create_dir_all(shops.join("crm")).unwrap();
    std::fs::write(
        shops.join("crm/shop.toml"),
        format!(
            "name = \"crm\"\napi_key_env = \"KEFU_KEY_LAB\"\nrevisit_webhook = \"{webhook}\"\n\n[steps.revisit-planner]\nconfig = {{ unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }}\n"
        ),
    )
    .unwrap();
    Server::start(&write_config(dir, &shops, ""))
}

/// An unpaid-order revisit request due at `due` for customer `c{i}`.
fn unpaid(i: usize, due: i64) -> Value {
    let mut req: Value = serde_json::from_slice(
        &std::fs::read(support::example("requests/revisit-planner/unpaid.json")).unwrap(),
    )
    .unwrap();
    req["customer"]["id"] = json!(format!("c{i}"));
    req["trigger"]["Unpaid"]["created_at"] = json!(due);
    req
}

#[test]
fn ten_thousand_revisits_fire_once_each_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let (receiver, url) = Receiver::start();
    let server = crm_server(dir.path(), &url);
    let now = chrono::Utc::now().timestamp();
    // Due over an 8-second window starting 3 s from now.
    let requests: Vec<Value> = (0..10_000)
        .map(|i| unpaid(i, now + 3 + (i % 8) as i64))
        .collect();
    let (status, out) = post(
        &server,
        "/v1/shops/crm/revisit-plans",
        Some(KEY),
        serde_json::to_vec(&json!({ "requests": requests })).unwrap(),
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["planned"], 10_000);

    // Kill -9 while revisits are firing.
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.distinct() < 2_000 {
        assert!(Instant::now() < deadline, "webhooks never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_kill = receiver.distinct();
    server.kill();
    let server = Server::start(&dir.path().join("kefu.toml"));
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.distinct() < 10_000 {
        assert!(
            Instant::now() < deadline,
            "only {} of 10,000 revisits fired",
            receiver.distinct()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let seen = receiver.seen.lock().unwrap();
    let odd: Vec<&String> = seen
        .keys()
        .filter(|k| !(k.starts_with("revisit-") && k.ends_with("-1")))
        .take(5)
        .collect();
    assert_eq!(
        seen.len(),
        10_000,
        "each revisit fired exactly once by its idempotency key; unexpected keys: {odd:?}"
    );
    assert!(
        seen.keys()
            .all(|k| k.starts_with("revisit-") && k.ends_with("-1")),
        "first attempts only"
    );
    let resent: u32 = seen.values().map(|v| v.0 - 1).sum();
    let early = seen.values().filter(|v| v.1 + 0.001 < v.2 as f64).count();
    assert_eq!(early, 0, "no webhook before its revisit's time");
    let mut late: Vec<f64> = seen.values().map(|v| v.1 - v.2 as f64).collect();
    late.sort_by(f64::total_cmp);
    eprintln!(
        "10,000 revisits: {at_kill} delivered before the kill, {resent} re-sent after it (same key); lateness p50 {:.2} s, p99 {:.2} s, max {:.2} s",
        late[5_000], late[9_900], late[9_999]
    );
    let (_, due) = get(
        &server,
        "/v1/shops/crm/revisits?status=due&limit=1000",
        Some(KEY),
    );
    assert_eq!(due["revisits"].as_array().unwrap().len(), 1000);
    let (_, planned) = get(&server, "/v1/shops/crm/revisits?status=planned", Some(KEY));
    assert_eq!(planned["revisits"], json!([]));
}

#[test]
fn agents_record_outcomes_and_customers_can_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_receiver, url) = Receiver::start();
    let s = crm_server(dir.path(), &url);
    let now = chrono::Utc::now().timestamp();
    let body =
        json!({ "requests": [unpaid(1, now - 10), unpaid(2, now - 10), unpaid(3, now + 3600)] });
    let (status, out) = post(
        &s,
        "/v1/shops/crm/revisit-plans",
        Some(KEY),
        serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!((status, out["planned"].as_u64()), (200, Some(3)), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let due = loop {
        let (_, due) = get(&s, "/v1/shops/crm/revisits?status=due", Some(KEY));
        if due["revisits"].as_array().unwrap().len() == 2 {
            break due;
        }
        assert!(
            Instant::now() < deadline,
            "revisits due 10 s ago never fired: {due}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let id = due["revisits"][0]["id"].as_u64().unwrap();
    let (status, out) = post(
        &s,
        &format!("/v1/shops/crm/revisits/{id}/outcome"),
        Some(KEY),
        r#"{"result":"reached","satisfaction":5,"note":"满意","agent":"慧兰"}"#,
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["revisit"]["status"], "done");
    let (status, err) = post(
        &s,
        &format!("/v1/shops/crm/revisits/{id}/outcome"),
        Some(KEY),
        br#"{"result":"reached"}"#,
    );
    assert_eq!(status, 400, "a done revisit takes no more outcomes: {err}");
    let (status, err) = post(
        &s,
        &format!("/v1/shops/crm/revisits/{id}/outcome"),
        Some(KEY),
        br#"{"result":"reached","satisfaction":"high"}"#,
    );
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("satisfaction"))
    );
    let other = due["revisits"][1]["id"].as_u64().unwrap();
    let (_, out) = post(
        &s,
        &format!("/v1/shops/crm/revisits/{other}/outcome"),
        Some(KEY),
        br#"{"result":"no-answer"}"#,
    );
    // A payment reminder is made once (催单): no answer closes it.
    assert_eq!(out["revisit"]["max_attempts"], 1);
    assert_eq!(out["revisit"]["status"], "unreachable", "{out}");

    // Customer c3 asks not to be contacted: their open revisit is cancelled
    // and a new plan for them is kept cancelled.
    let (status, out) = post(
        &s,
        "/v1/shops/crm/customers/c3/do-not-contact",
        Some(KEY),
        b"",
    );
    assert_eq!(
        (status, out["cancelled_revisits"].as_u64()),
        (200, Some(1)),
        "{out}"
    );
    post(
        &s,
        "/v1/shops/crm/revisit-plans",
        Some(KEY),
        serde_json::to_vec(&json!({ "requests": [unpaid(3, now + 7200)] })).unwrap(),
    );
    let (_, cancelled) = get(&s, "/v1/shops/crm/revisits?status=cancelled", Some(KEY));
    assert_eq!(cancelled["revisits"].as_array().unwrap().len(), 2);

    let (status, report) = get(
        &s,
        &format!(
            "/v1/shops/crm/revisits/report?from={}&to={}",
            now - 100,
            now + 100
        ),
        Some(KEY),
    );
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (report["done"].as_u64(), report["reached"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(report["satisfaction_average"], 5.0);
    let (status, _) = get(&s, "/v1/shops/crm/revisits/report?period=year", Some(KEY));
    assert_eq!(status, 400);
}
