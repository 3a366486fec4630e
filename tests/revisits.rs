//! Revisits through the real binary: planning in batches, webhooks with
//! idempotency keys and signatures, fair delivery between shops and dead
//! letters, outcomes, do-not-contact, and a kill -9 in the middle of
//! firing 10,000 revisits.

mod support;

use serde_json::{Value, json};
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::hook::Receiver;
use support::server::{ADMIN, Server, WEBHOOK_SECRET, get, post, write_config};
use support::shops::unpaid;

const KEY: &str = "test-key-lab";

/// The shop `crm` (see `support::shops::crm`) served alone.
fn crm_server(dir: &std::path::Path, webhook: &str) -> Server {
    let shops = dir.join("shops");
    support::shops::crm(&shops, webhook);
    Server::start(&write_config(dir, &shops, ""))
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
    assert_eq!(status, 409, "a done revisit takes no more outcomes: {err}");
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

/// How a test endpoint answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// 200 at once.
    Fast,
    /// Reads the request and never answers.
    Hang,
    /// 500 at once.
    Fail,
}

/// A webhook endpoint that records (arrival, due_at, signature valid) per
/// delivery, the connections it holds open, and whose mode can change.
#[derive(Clone)]
struct Endpoint {
    mode: Arc<Mutex<Mode>>,
    arrivals: Arc<Mutex<Vec<(f64, i64, bool)>>>,
    open: Arc<Mutex<(usize, usize)>>,
}

impl Endpoint {
    fn start(mode: Mode) -> (Endpoint, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let endpoint = Endpoint {
            mode: Arc::new(Mutex::new(mode)),
            arrivals: Default::default(),
            open: Default::default(),
        };
        let e = endpoint.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let e = e.clone();
                std::thread::spawn(move || e.serve(stream));
            }
        });
        (endpoint, url)
    }

    fn serve(&self, mut stream: std::net::TcpStream) {
        let Some(request) = support::hook::read(&stream) else {
            return;
        };
        let signature = request
            .header("kefu-signature")
            .unwrap_or_default()
            .to_string();
        let body = request.body;
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let due = serde_json::from_slice::<Value>(&body).unwrap()["revisit"]["due_at"]
            .as_i64()
            .unwrap();
        let mode = *self.mode.lock().unwrap();
        if mode == Mode::Hang {
            {
                let mut open = self.open.lock().unwrap();
                open.0 += 1;
                open.1 = open.1.max(open.0);
            }
            std::thread::sleep(Duration::from_secs(40));
            self.open.lock().unwrap().0 -= 1;
            return;
        }
        self.arrivals
            .lock()
            .unwrap()
            .push((now, due, verify(&signature, &body)));
        let status = if mode == Mode::Fast {
            "200 OK"
        } else {
            "500 Internal Server Error"
        };
        let _ = stream.write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        );
    }

    fn arrivals(&self) -> Vec<(f64, i64, bool)> {
        self.arrivals.lock().unwrap().clone()
    }
}

/// What a receiver does with `Kefu-Signature: t=T,v1=HEX` (the README's
/// recipe): HMAC-SHA256 of "T.body" with the shop's secret, and a recent T.
fn verify(header: &str, body: &[u8]) -> bool {
    use hmac::Mac;
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    (chrono::Utc::now().timestamp() - t).abs() < 300 && mac.verify_slice(&v1).is_ok()
}

/// #27 item 5: one shop's webhook endpoint hangs, another's answers at
/// once, a third's fails. The fast shop's deliveries arrive within 1 s of
/// falling due, signed; the hanging one holds no more than its per-shop
/// limit of connections; the failing one is dead-lettered after its tries,
/// listed, and delivered when retried through the API.
#[test]
fn a_hanging_webhook_delays_no_other_shop_and_failures_are_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let (slow, slow_url) = Endpoint::start(Mode::Hang);
    let (fast, fast_url) = Endpoint::start(Mode::Fast);
    let (down, down_url) = Endpoint::start(Mode::Fail);
    let shops = dir.path().join("shops");
    for (shop, url) in [
        ("slow", &slow_url),
        ("fast", &fast_url),
        ("down", &down_url),
    ] {
        std::fs::create_dir_all(shops.join(shop)).unwrap();
        std::fs::write(
            shops.join(format!("{shop}/shop.toml")),
            format!(
                "name = \"{shop}\"\napi_key_sha256 = \"{}\"\nrevisit_webhook = \"{url}\"\nwebhook_secret_env = \"KEFU_WEBHOOK_SECRET_LAB\"\n\n[steps.revisit-planner]\nconfig = {{ unpaid_after_hours = 0, contact_hour = 0, contact_until_hour = 24 }}\n",
                sha256_hex(&format!("key-{shop}"))
            ),
        )
        .unwrap();
    }
    let config = write_config(
        dir.path(),
        &shops,
        "[webhooks]\nmax_tries = 3\nmax_backoff_secs = 1\ntimeout_secs = 30\nper_shop = 2\n",
    );
    let server = Server::start(&config);
    let plan = |shop: &str, n: usize, due: i64| {
        let requests: Vec<Value> = (0..n).map(|i| unpaid(i, due)).collect();
        let (status, out) = post(
            &server,
            &format!("/v1/shops/{shop}/revisit-plans"),
            Some(&format!("key-{shop}")),
            serde_json::to_vec(&json!({ "requests": requests })).unwrap(),
        );
        assert_eq!(
            (status, out["planned"].as_u64()),
            (200, Some(n as u64)),
            "{out}"
        );
    };
    let now = chrono::Utc::now().timestamp();
    plan("slow", 20, now + 1);
    plan("down", 1, now + 1);
    plan("fast", 5, now + 2);
    plan("fast", 5, now + 4);

    let deadline = Instant::now() + Duration::from_secs(15);
    while fast.arrivals().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "fast deliveries: {:?}",
            fast.arrivals()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let latest = fast
        .arrivals()
        .iter()
        .map(|(arrived, due, _)| arrived - *due as f64)
        .fold(f64::MIN, f64::max);
    eprintln!("the fast shop's deliveries: the latest arrived {latest:.3} s after falling due");
    for (arrived, due, signed) in fast.arrivals() {
        let late = arrived - due as f64;
        assert!(
            late < 1.0,
            "a fast delivery arrived {late:.2} s after it fell due"
        );
        assert!(signed, "every delivery is signed with the shop's secret");
    }
    assert!(
        slow.open.lock().unwrap().1 <= 2,
        "the hanging shop held more than its limit"
    );

    // The failing shop: three tries, then dead-lettered.
    let path = "/v1/shops/down/webhooks?status=dead";
    let dead = loop {
        let (status, out) = get(&server, path, Some("key-down"));
        assert_eq!(status, 200, "{out}");
        if out["webhooks"].as_array().unwrap().len() == 1 {
            break out["webhooks"][0].clone();
        }
        assert!(
            Instant::now() < deadline + Duration::from_secs(10),
            "never dead-lettered: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        (dead["status"].as_str(), dead["tries"].as_u64()),
        (Some("dead"), Some(3)),
        "{dead}"
    );
    assert_eq!(dead["last_error"], "HTTP 500");
    assert_eq!(down.arrivals().len(), 3);
    // #28 item 6: the backlog in the metrics: the hanging shop's 20
    // deliveries wait, the dead letter is counted, the oldest has aged.
    let (_, metrics) = get(&server, "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("kefu_webhooks_queued"), 20.0);
    assert_eq!(gauge("kefu_webhooks_dead"), 1.0);
    assert!(
        gauge("kefu_webhooks_oldest_age_seconds") >= 1.0,
        "{metrics}"
    );
    assert_eq!(gauge("kefu_revisits_overdue"), 0.0);
    assert!(metrics.contains("# HELP kefu_webhooks_oldest_age_seconds"));
    // Nothing of another shop's shows, and only its own key opens it.
    let (_, fast_list) = get(&server, "/v1/shops/fast/webhooks", Some("key-fast"));
    assert!(
        fast_list["webhooks"].as_array().unwrap().is_empty(),
        "{fast_list}"
    );
    assert_eq!(get(&server, path, Some("key-fast")).0, 403);
    assert_eq!(
        get(&server, "/v1/shops/down/webhooks?status=gone", Some(ADMIN)).0,
        400
    );

    // Fixed and retried through the API: delivered once, gone from the list.
    *down.mode.lock().unwrap() = Mode::Fast;
    let key = dead["key"].as_str().unwrap();
    let (status, retried) = post(
        &server,
        &format!("/v1/shops/down/webhooks/{key}/retry"),
        Some("key-down"),
        "",
    );
    assert_eq!(
        (status, retried["webhook"]["status"].as_str()),
        (200, Some("queued")),
        "{retried}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out) = get(&server, "/v1/shops/down/webhooks", Some("key-down"));
        if out["webhooks"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the retry was never delivered: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(down.arrivals().len(), 4);
    assert_eq!(
        post(
            &server,
            "/v1/shops/down/webhooks/nope/retry",
            Some("key-down"),
            ""
        )
        .0,
        404
    );
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}
