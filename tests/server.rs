//! The real `kefu serve` over HTTP: every endpoint, auth, bad input,
//! plugin failures, and state across restarts.

mod support;

use serde_json::{Value, json};
use support::server::{ADMIN, APPAREL_KEY, Server, TEA_KEY, get, post, write_config};
use support::{example, shops};

const LAB_KEY: &str = "test-key-lab";

fn request(step: &str, case: &str) -> Vec<u8> {
    std::fs::read(example(&format!("requests/{step}/{case}.json"))).unwrap()
}

fn lab_server(extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let shops = shops::lab(dir.path());
    let config = write_config(dir.path(), &shops, extra);
    let server = Server::start(&config);
    (dir, server)
}

fn greet_time(entry: &Value) -> i64 {
    entry["at_ms"].as_i64().expect("at_ms")
}

#[test]
fn every_step_answers_and_is_logged() {
    let (_dir, s) = lab_server("");
    let (status, greet) = post(
        &s,
        "/v1/shops/tea-oil/greeting",
        Some(TEA_KEY),
        request("greeting", "discount"),
    );
    assert_eq!(status, 200, "{greet}");
    assert!(
        greet["output"]["reply"]
            .as_str()
            .unwrap()
            .contains("山野茶油旗舰店")
    );
    // The tea-oil shop greets with its JavaScript plugin.
    assert_eq!(greet["plugin"]["source"]["kind"], "file");
    assert_eq!(greet["plugin"]["digest"].as_str().unwrap().len(), 64);

    let (status, conf) = post(
        &s,
        "/v1/shops/tea-oil/order-confirmation",
        Some(TEA_KEY),
        request("order-confirmation", "ok-with-remark"),
    );
    assert_eq!(status, 200);
    assert_eq!(conf["output"]["verdict"], "Ok");

    let (status, refund) = post(
        &s,
        "/v1/shops/tea-oil/refund-decision",
        Some(TEA_KEY),
        request("refund-policy", "unshipped"),
    );
    assert_eq!(status, 200);
    assert_eq!(refund["output"]["outcome"], "Approve");
    let (status, refunds) = get(&s, "/v1/shops/tea-oil/refunds", Some(TEA_KEY));
    assert_eq!(status, 200);
    assert_eq!(refunds["refunds"][0]["order_id"], "T20261118001");
    assert_eq!(refunds["refunds"][0]["decision_id"], refund["decision_id"]);

    let (status, plan) = post(
        &s,
        "/v1/shops/tea-oil/revisit-plan",
        Some(TEA_KEY),
        request("revisit-planner", "delivered"),
    );
    assert_eq!(status, 200, "{plan}");
    let (_, revisits) = get(&s, "/v1/shops/tea-oil/revisits", Some(TEA_KEY));
    let purposes: Vec<&str> = revisits["revisits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["purpose"].as_str().unwrap())
        .collect();
    assert!(
        purposes.contains(&"satisfaction") && purposes.contains(&"refill"),
        "{revisits}"
    );

    let (_, log) = get(&s, "/v1/shops/tea-oil/decisions", Some(TEA_KEY));
    assert_eq!(log["decisions"].as_array().unwrap().len(), 4);
    let (_, greetings) = get(
        &s,
        "/v1/shops/tea-oil/decisions?step=greeting",
        Some(TEA_KEY),
    );
    let entry = &greetings["decisions"][0];
    assert_eq!(greetings["decisions"].as_array().unwrap().len(), 1);
    assert_eq!(entry["id"], greet["decision_id"]);
    assert_eq!(entry["input"]["message"], "能便宜点吗？");
    assert_eq!(entry["output"], greet["output"]);
    assert_eq!(entry["digest"], greet["plugin"]["digest"]);
    let (_, by_endpoint) = get(
        &s,
        "/v1/shops/tea-oil/decisions?step=refund-decision&limit=5",
        Some(TEA_KEY),
    );
    assert_eq!(by_endpoint["decisions"][0]["step"], "refund-policy");
    let an_hour_ahead = greet_time(entry) + 3_600_000;
    let (_, none) = get(
        &s,
        &format!("/v1/shops/tea-oil/decisions?since={an_hour_ahead}"),
        Some(TEA_KEY),
    );
    assert_eq!(none["decisions"], json!([]));
    // The other shop's log is its own.
    // Buyers' phone numbers (in the order and refund requests above) never
    // reach the server's log.
    let log = std::fs::read_to_string(&s.log).unwrap();
    assert!(
        !log.contains("13812345678"),
        "a buyer's phone number reached the log"
    );
    let (_, apparel) = get(&s, "/v1/shops/apparel/decisions", Some(APPAREL_KEY));
    assert_eq!(apparel["decisions"], json!([]));
}

#[test]
fn keys_open_only_their_own_shop() {
    let (_dir, s) = lab_server("");
    let body = request("greeting", "first-visit");
    let (status, err) = post(&s, "/v1/shops/tea-oil/greeting", None, &body);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, err) = post(&s, "/v1/shops/tea-oil/greeting", Some(APPAREL_KEY), &body);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = get(&s, "/v1/shops/tea-oil/refunds", Some(APPAREL_KEY));
    assert_eq!(status, 403, "shop B's key reads nothing of shop A");
    let (status, _) = post(&s, "/v1/shops/tea-oil/greeting", Some(ADMIN), &body);
    assert_eq!(status, 403, "the admin token does not act as a shop");
    let (status, _) = get(&s, "/v1/shops/tea-oil/decisions", Some(ADMIN));
    assert_eq!(status, 200, "the admin token reads every shop");
    let (status, _) = get(&s, "/v1/plugins", Some(TEA_KEY));
    assert_eq!(status, 403, "a shop key is not an admin token");
    let (status, _) = get(&s, "/v1/plugins", None);
    assert_eq!(status, 401);
    // Keys never reach the log.
    let log = std::fs::read_to_string(&s.log).unwrap();
    for key in [TEA_KEY, APPAREL_KEY, ADMIN] {
        assert!(!log.contains(key), "key leaked into the log");
    }
}

#[test]
fn bad_requests_get_clear_errors() {
    let (_dir, s) = lab_server("max_body_kib = 16");
    let call = |body: &[u8]| post(&s, "/v1/shops/tea-oil/greeting", Some(TEA_KEY), body);
    let (status, err) = call(b"{\"customer\": ");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{err}"
    );
    // A valid request with something after it is not JSON either.
    let mut trailing = request("greeting", "first-visit");
    trailing.extend_from_slice(b" {}");
    let (status, err) = call(&trailing);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_json")),
        "{err}"
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trailing"),
        "{err}"
    );
    let (status, err) = call(br#"{"customer":{"id":"x","nickname":"n","member_level":null,"order_count":"many","returning":false},"message":"","agent_name":null}"#);
    assert_eq!(status, 400);
    assert_eq!(err["error"]["code"], "invalid_field");
    assert_eq!(err["error"]["field"], "customer.order_count");
    let (status, err) = call(br#"{"message":"hi"}"#);
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing field `customer`"),
        "{err}"
    );
    // Whether a shop exists is the admin's to know: a shop key gets what a
    // wrong key gets, and no key is a 401 either way.
    let (status, err) = post(&s, "/v1/shops/nope/greeting", Some(TEA_KEY), b"{}");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (status, _) = post(&s, "/v1/shops/nope/greeting", None, b"{}");
    assert_eq!(status, 401);
    let (status, err) = get(&s, "/v1/shops/nope/decisions", Some(ADMIN));
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_shop"))
    );
    let (status, err) = post(&s, "/v1/shops/tea-oil/farewell", Some(TEA_KEY), b"{}");
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (404, Some("unknown_step"))
    );
    let big = vec![b' '; 20 * 1024];
    let (status, err) = call(&big);
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (413, Some("body_too_large")),
        "{err}"
    );
    let (status, err) = get(&s, "/v1/shops/tea-oil/refunds?limit=0", Some(TEA_KEY));
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, err) = get(&s, "/v1/shops/tea-oil/decisions?limit=abc", Some(TEA_KEY));
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    let (status, err) = get(
        &s,
        "/v1/shops/tea-oil/decisions?step=farewell",
        Some(TEA_KEY),
    );
    assert_eq!(status, 400, "{err}");
    let (status, _) = get(&s, "/v2/anything", None);
    assert_eq!(status, 404);
    // Still serving.
    let (status, _) = call(&request("greeting", "first-visit"));
    assert_eq!(status, 200);
}

/// A plugin that is slow but within its timeout answers normally: after
/// its first 5 ms of CPU it moves to the slow lane, and its later calls go
/// there directly, while other shops keep answering from the async threads.
/// The same for a step that reuses its instances: its calls run inline like
/// fresh ones and move to the slow lane the same way (they used to block a
/// thread of the blocking pool at normal priority, however long they ran).
#[test]
fn a_slow_but_legal_plugin_answers_from_the_slow_lane() {
    let dir = tempfile::tempdir().unwrap();
    let shops = shops::lab(dir.path());
    let spin = r#"behavior = "spin", iterations = 100000000"#;
    shops::hostile_shop_with(&shops, "busy", spin);
    shops::hostile_shop_with(&shops, "busy-reused", spin);
    let toml = shops.join("busy-reused/shop.toml");
    let reused = std::fs::read_to_string(&toml).unwrap() + "instances = \"reuse\"\n";
    std::fs::write(&toml, reused).unwrap();
    let s = Server::start(&write_config(
        dir.path(),
        &shops,
        "[limits]\ntimeout_ms = 5000",
    ));
    let body = request("refund-policy", "unshipped");
    std::thread::scope(|scope| {
        let busy = ["busy", "busy-reused"].map(|shop| {
            let (s, body) = (&s, &body);
            scope.spawn(move || {
                (0..3)
                    .map(|_| {
                        let path = format!("/v1/shops/{shop}/refund-decision");
                        post(s, &path, Some(LAB_KEY), body)
                    })
                    .collect::<Vec<_>>()
            })
        });
        for _ in 0..20 {
            let (status, _) = post(
                &s,
                "/v1/shops/apparel/greeting",
                Some(APPAREL_KEY),
                request("greeting", "first-visit"),
            );
            assert_eq!(status, 200, "another shop must keep answering");
        }
        for (status, out) in busy.into_iter().flat_map(|b| b.join().unwrap()) {
            assert_eq!(status, 200, "{out}");
            assert_eq!(out["output"]["message"], "spun 100000000", "{out}");
            assert!(
                out["duration_us"].as_u64().unwrap() > 5_000,
                "slower than the inline budget: {out}"
            );
        }
    });
    let (_, metrics) = get(&s, "/metrics", None);
    let metrics = metrics.as_str().unwrap();
    // Moved once each; the next two calls went to the slow lane directly.
    for shop in ["busy", "busy-reused"] {
        let moved = format!("kefu_calls_offloaded_total{{shop=\"{shop}\"}} 1\n");
        assert!(metrics.contains(&moved), "{shop}: {metrics}");
    }
    assert!(!metrics.contains(r#"kefu_calls_offloaded_total{shop="apparel"}"#));
}

#[test]
fn a_plugin_timeout_is_a_clear_error_while_other_shops_answer() {
    let (_dir, s) = lab_server("[limits]\ntimeout_ms = 400");
    let body = request("refund-policy", "unshipped");
    std::thread::scope(|scope| {
        let slow = scope.spawn(|| {
            let started = std::time::Instant::now();
            let out = post(&s, "/v1/shops/slow/refund-decision", Some(LAB_KEY), &body);
            (out, started.elapsed())
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        for _ in 0..5 {
            let (status, _) = post(
                &s,
                "/v1/shops/tea-oil/greeting",
                Some(TEA_KEY),
                request("greeting", "first-visit"),
            );
            assert_eq!(status, 200, "another shop must keep answering");
        }
        let ((status, err), took) = slow.join().unwrap();
        assert_eq!(status, 504, "{err}");
        assert_eq!(err["error"]["code"], "plugin_timeout");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("timed out after 400ms"),
            "{err}"
        );
        assert!(err["decision_id"].is_u64(), "failures are logged too");
        assert!(took < std::time::Duration::from_secs(5));
    });
    let (_, log) = get(&s, "/v1/shops/slow/decisions", Some(LAB_KEY));
    assert_eq!(log["decisions"][0]["error"]["code"], "plugin_timeout");
    let (_, metrics) = get(&s, "/metrics", None);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(
            r#"kefu_call_errors_total{shop="slow",step="refund-policy",code="plugin_timeout"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kefu_calls_total{shop="slow",step="refund-policy",outcome="error"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kefu_call_duration_seconds_count{shop="slow",step="refund-policy"} 1"#)
    );
    // Every answer waited for a group-commit flush, which is timed.
    assert!(
        metrics.contains("kefu_flush_duration_seconds_bucket"),
        "{metrics}"
    );
    // Whole answers are timed per step, with buckets fine around 1-10 ms.
    assert!(
        metrics
            .contains(r#"kefu_answer_duration_seconds_bucket{step="refund-policy",le="0.0075"}"#),
        "{metrics}"
    );
}

/// The bundled plugins reuse their instances unless the shop folder says
/// "fresh"; a shop's own plugin gets a fresh one per call unless it says
/// "reuse". A reused bundled plugin answers every call as a fresh one would.
#[test]
fn bundled_plugins_reuse_instances_unless_the_folder_says_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let shops = shops::lab(dir.path());
    let toml = shops.join("tea-oil/shop.toml");
    let text = std::fs::read_to_string(&toml).unwrap().replace(
        "[steps.refund-policy]\n",
        "[steps.refund-policy]\ninstances = \"fresh\"\n",
    );
    std::fs::write(&toml, text).unwrap();
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    let (status, plugins) = get(&s, "/v1/plugins", Some(ADMIN));
    assert_eq!(status, 200);
    let instances = |shop: &str, step: &str| {
        let p = plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["shop"] == shop && p["step"] == step)
            .unwrap_or_else(|| panic!("{shop} {step}: {plugins}"));
        (p["source"]["kind"].clone(), p["instances"].clone())
    };
    let kinds = [
        ("tea-oil", "order-confirmation", "bundled", "reuse"),
        ("tea-oil", "refund-policy", "bundled", "fresh"),
        ("tea-oil", "greeting", "file", "fresh"),
        ("slow", "refund-policy", "file", "fresh"),
        ("apparel", "refund-policy", "file", "reuse"),
    ];
    for (shop, step, source, mode) in kinds {
        assert_eq!(
            instances(shop, step),
            (Value::from(source), Value::from(mode)),
            "{shop} {step}"
        );
    }
    let mut answers = std::collections::HashSet::new();
    for _ in 0..20 {
        let (status, out) = post(
            &s,
            "/v1/shops/tea-oil/order-confirmation",
            Some(TEA_KEY),
            request("order-confirmation", "ok-with-remark"),
        );
        assert_eq!(status, 200, "{out}");
        answers.insert(out["output"].to_string());
    }
    assert_eq!(answers.len(), 1, "{answers:?}");
}

#[test]
fn broken_plugins_and_shops_are_reported_and_the_rest_is_served() {
    let (_dir, s) = lab_server("");
    let (status, plugins) = get(&s, "/v1/plugins", Some(ADMIN));
    assert_eq!(status, 200);
    let entries = plugins["plugins"].as_array().unwrap();
    let find = |shop: &str, step: &str| {
        entries
            .iter()
            .find(|p| p["shop"] == shop && p["step"] == step)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let broken = find("broken", "refund-policy");
    assert_eq!(broken["status"], "unavailable");
    assert!(
        broken["reason"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file"),
        "{broken}"
    );
    let tea = find("tea-oil", "order-confirmation");
    assert_eq!(tea["status"], "active");
    assert_eq!(tea["source"]["kind"], "bundled");
    assert_eq!(tea["instances"], "reuse");
    let apparel = find("apparel", "refund-policy");
    assert_eq!(
        (
            apparel["source"]["kind"].as_str(),
            apparel["instances"].as_str()
        ),
        (Some("file"), Some("reuse"))
    );
    let slow = find("slow", "refund-policy");
    assert_eq!(slow["source"]["kind"], "file");
    assert_eq!(slow["version"], 1);
    let failures = plugins["failures"].as_array().unwrap();
    assert!(failures.iter().any(|f| f["shop"] == "bad-toml" && f["reason"].as_str().unwrap().contains("shop.toml")), "{failures:?}");

    let (status, err) = post(
        &s,
        "/v1/shops/broken/refund-decision",
        Some(LAB_KEY),
        request("refund-policy", "unshipped"),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (503, Some("plugin_unavailable"))
    );
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file")
    );
    let (status, _) = post(
        &s,
        "/v1/shops/broken/greeting",
        Some(LAB_KEY),
        request("greeting", "first-visit"),
    );
    assert_eq!(status, 200, "the shop's other steps still work");
    // A shop whose shop.toml never loaded is listed degraded; its key is
    // unreadable, so only the admin opens it (and finds nothing in it).
    let (status, err) = post(
        &s,
        "/v1/shops/bad-toml/greeting",
        Some(LAB_KEY),
        request("greeting", "first-visit"),
    );
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{err}"
    );
    let (status, log) = get(&s, "/v1/shops/bad-toml/decisions", Some(ADMIN));
    assert_eq!(status, 200, "{log}");
    assert!(
        plugins["degraded"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["shop"] == "bad-toml"),
        "{plugins}"
    );
}

#[test]
fn plugin_state_survives_a_restart_and_stays_per_shop() {
    let (dir, s) = lab_server("");
    let body = request("refund-policy", "unshipped");
    let count = |s: &Server, shop: &str| {
        let (status, out) = post(
            s,
            &format!("/v1/shops/{shop}/refund-decision"),
            Some(LAB_KEY),
            &body,
        );
        assert_eq!(status, 200, "{out}");
        out["output"]["message"].as_str().unwrap().to_string()
    };
    assert_eq!(
        [
            count(&s, "count-a"),
            count(&s, "count-a"),
            count(&s, "count-a")
        ],
        ["1", "2", "3"]
    );
    assert_eq!(
        count(&s, "count-b"),
        "1",
        "same plugin, other shop: its own state"
    );
    let config = s.config.clone();
    drop(s);
    let s = Server::start(&config);
    assert_eq!(count(&s, "count-a"), "4");
    assert_eq!(count(&s, "count-b"), "2");
    drop(dir);
}

/// Huge-page faults on the request threads were the greeting step's p99
/// at 64 connections (see `opt_out_of_huge_pages` in main.rs).
#[test]
fn the_server_runs_without_transparent_huge_pages() {
    let (_dir, s) = lab_server("");
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) else {
        eprintln!("this kernel does not report THP_enabled; nothing to check");
        return;
    };
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}

#[test]
fn health_readiness_and_metrics() {
    let (_dir, s) = lab_server("");
    assert_eq!(get(&s, "/healthz", None).0, 200);
    let (status, ready) = get(&s, "/readyz", None);
    assert_eq!(status, 200);
    assert!(ready.as_str().unwrap().contains("ready"));
    // What is loaded is there from the first scrape, and agrees with
    // `GET /v1/plugins` (the lab has a broken step and a bad shop.toml).
    let (_, plugins) = get(&s, "/v1/plugins", Some(ADMIN));
    let entries = plugins["plugins"].as_array().unwrap();
    let count = |status: &str| entries.iter().filter(|p| p["status"] == status).count();
    let failures = plugins["failures"].as_array().unwrap().len();
    assert!(count("unavailable") >= 1 && failures >= 1, "{plugins}");
    let (_, metrics) = get(&s, "/metrics", None);
    let metrics = metrics.as_str().unwrap();
    for line in [
        format!(r#"kefu_steps{{status="active"}} {}"#, count("active")),
        format!(
            r#"kefu_steps{{status="unavailable"}} {}"#,
            count("unavailable")
        ),
        format!("kefu_load_failures {failures}"),
    ] {
        assert!(metrics.contains(&line), "{line} missing from {metrics}");
    }
    let shops: std::collections::BTreeSet<&str> = entries
        .iter()
        .map(|p| p["shop"].as_str().unwrap())
        .collect();
    let line = format!("kefu_shops {}", shops.len());
    assert!(metrics.contains(&line), "{line} missing from {metrics}");
    post(
        &s,
        "/v1/shops/apparel/greeting",
        Some(APPAREL_KEY),
        request("greeting", "first-visit"),
    );
    let (_, metrics) = get(&s, "/metrics", None);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"kefu_calls_total{shop="apparel",step="greeting",outcome="ok"} 1"#)
    );
}

/// Open a raw connection to the server and send `bytes`.
fn raw(s: &Server, bytes: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let addr = s
        .url("")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream
}

/// What the server sends before it closes the connection (or the read
/// times out after 10 s: `None`).
fn until_closed(mut stream: std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        Err(_) => None,
    }
}

/// #27 item 14: clients that stall mid-headers or mid-body are cut off
/// after the configured timeouts, and connections beyond the limit wait
/// for a free one instead of piling up.
#[test]
fn slow_clients_are_timed_out_and_connections_are_bounded() {
    use std::time::{Duration, Instant};
    let (_dir, s) =
        lab_server("[http]\nheader_timeout_secs = 1\nbody_timeout_secs = 1\nmax_connections = 8\n");
    // 21 connections stalled in their headers: all closed, none answered.
    let started = Instant::now();
    let stalled: Vec<_> = (0..21)
        .map(|_| {
            raw(
                &s,
                b"POST /v1/shops/tea-oil/greeting HTTP/1.1\r\nHost: kefu\r\n",
            )
        })
        .collect();
    // With 8 held, a 9th client waits for a free connection, then is served.
    let (status, _) = get(&s, "/healthz", None);
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        waited >= Duration::from_millis(500),
        "served at once ({waited:?}) past the limit"
    );
    for stream in stalled {
        let sent = until_closed(stream).expect("a stalled connection stayed open");
        assert!(!sent.contains("200 OK"), "{sent}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );

    // A body that stops halfway: 408 request_timeout.
    let stream = raw(
        &s,
        format!(
            "POST /v1/shops/tea-oil/greeting HTTP/1.1\r\nHost: kefu\r\nAuthorization: Bearer {TEA_KEY}\r\nContent-Length: 100\r\n\r\n{{\"customer\":"
        )
        .as_bytes(),
    );
    let answer = until_closed(stream).expect("a stalled body was never answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // And the server goes on serving.
    let (status, _) = post(
        &s,
        "/v1/shops/tea-oil/greeting",
        Some(TEA_KEY),
        request("greeting", "discount"),
    );
    assert_eq!(status, 200);
}

/// #28 item 5: `--log-format json` writes one JSON object per log line;
/// every answer carries a request id (`x-request-id`, the caller's when
/// sane), and with `kefu::request=debug` the log lines written while
/// handling it name it.
#[test]
fn json_logs_carry_the_request_id_of_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    shops::hostile_shop(&shops, "trap", "trap");
    let s = Server::start_with(
        &write_config(dir.path(), &shops, ""),
        &["--log-format", "json"],
        "info,kefu::request=debug",
    );
    let refund = request("refund-policy", "unshipped");
    let call = |id: Option<&str>| {
        let mut req = support::server::agent()
            .post(s.url("/v1/shops/trap/refund-decision"))
            .header("authorization", format!("Bearer {LAB_KEY}"))
            .header("content-type", "application/json");
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        let resp = req.send(&refund[..]).unwrap();
        let status = resp.status().as_u16();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        (status, id)
    };
    let (status, id) = call(Some("lb-7f3a.42"));
    assert_eq!((status, id.as_str()), (502, "lb-7f3a.42"));
    let (_, fresh) = call(Some("not sane!"));
    assert_eq!(fresh.len(), 16, "{fresh}");
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    let (_, next) = call(None);
    assert_ne!(next, fresh);
    // The plugin's failure is logged as JSON, inside the request's span.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let line = loop {
        let log = std::fs::read_to_string(&s.log).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("plugin call failed")) {
            break line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failure logged: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let entry: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(entry["level"], "WARN", "{entry}");
    assert_eq!(entry["fields"]["code"], "plugin_trap", "{entry}");
    assert_eq!(entry["span"]["id"], "lb-7f3a.42", "{entry}");
    for line in std::fs::read_to_string(&s.log).unwrap().lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
}

/// #28 item 6: the example alert rules and Grafana dashboard name only
/// metrics kefu records (each with its `# HELP`), so neither rots when a
/// metric is renamed.
#[test]
fn the_monitoring_examples_name_only_metrics_kefu_serves() {
    let known: Vec<&str> = kefu::app::metrics::METRICS
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    let mut seen = 0;
    for file in ["monitoring/alerts.yml", "monitoring/grafana-dashboard.json"] {
        let text = std::fs::read_to_string(example(file)).unwrap();
        // Every identifier that looks like a kefu or process metric.
        let names = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("kefu_") || w.starts_with("process_"));
        for name in names {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| known.contains(b))
                .unwrap_or(name);
            assert!(
                known.contains(&base),
                "{file} names `{name}`, which kefu does not record"
            );
            seen += 1;
        }
    }
    assert!(seen >= 20, "only {seen} metric names found");
    // The dashboard is JSON Grafana can import.
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(example("monitoring/grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 10);
}

/// #28 item 9: a data directory another kefu holds is named as such, and
/// the cause is said once (the message already holds it).
#[test]
fn a_data_directory_in_use_is_named_once() {
    let (_dir, s) = lab_server("");
    let out = support::kefu()
        .args(["serve", "--config"])
        .arg(&s.config)
        .args(["--listen", "127.0.0.1:0"])
        .env("KEFU_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the data directory"), "{err}");
    assert_eq!(err.matches("in use by another process").count(), 1, "{err}");
    assert_eq!(err.matches("could not acquire lock").count(), 1, "{err}");
}

/// #28 item 5: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, each request's span
/// goes to the collector as a child of the caller's W3C `traceparent`,
/// with its route, status, shop, step and version; the answer's
/// `traceparent` continues the caller's trace and names kefu's span.
#[test]
fn request_spans_go_to_the_otlp_collector_in_the_callers_trace() {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    let collector = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", collector.local_addr().unwrap());
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    {
        let received = received.clone();
        std::thread::spawn(move || {
            for stream in collector.incoming().flatten() {
                let Some(request) = support::hook::read(&stream) else {
                    continue;
                };
                let kind = request.header("content-type").unwrap_or("").to_string();
                if let Ok(body) = serde_json::from_slice(&request.body) {
                    received.lock().unwrap().push((kind, body));
                }
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
                );
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &shops::lab(dir.path()), "");
    let s = Server::start_with_env(
        &config,
        &[],
        "info",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut answer = support::server::agent()
        .post(s.url("/v1/shops/tea-oil/greeting"))
        .header("authorization", format!("Bearer {TEA_KEY}"))
        .header("traceparent", format!("00-{trace}-{caller}-01"))
        .send(&request("greeting", "discount")[..])
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let echoed = answer.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = answer.body_mut().read_to_string();
    let parts: Vec<&str> = echoed.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace, "01"),
        "{echoed}"
    );
    assert!(parts[2] != caller && parts[2].len() == 16, "{echoed}");

    // The span, exported within a few batches.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let span = loop {
        let found = received.lock().unwrap().iter().find_map(|(_, body)| {
            body["resourceSpans"]
                .as_array()?
                .iter()
                .flat_map(|r| r["scopeSpans"].as_array().into_iter().flatten())
                .flat_map(|s| s["spans"].as_array().into_iter().flatten())
                .find(|span| span["traceId"] == trace)
                .cloned()
        });
        if let Some(span) = found {
            break span;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no span of trace {trace} exported: {:?}",
            received.lock().unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(span["parentSpanId"], caller, "{span}");
    assert_eq!(span["spanId"], parts[2], "{span}");
    let attribute = |key: &str| -> String {
        let value = span["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == key)
            .unwrap_or_else(|| panic!("no {key} in {span}"))["value"]
            .clone();
        match (&value["stringValue"], &value["intValue"]) {
            (Value::String(s), _) => s.clone(),
            (_, Value::String(i)) => i.clone(),
            (_, i) => i.to_string(),
        }
    };
    assert_eq!(attribute("shop"), "tea-oil");
    assert_eq!(attribute("step"), "greeting");
    assert_eq!(attribute("route"), "/v1/shops/{shop}/{step}");
    assert_eq!(attribute("status"), "200");
    assert!(attribute("version").parse::<u64>().unwrap() >= 1);
    assert_eq!(received.lock().unwrap()[0].0, "application/json");
}

/// #29: with a short retention (`decision_retention_secs`) the server
/// prunes the decision log by itself and deletes its old segment files:
/// the entries go, the folder does not keep them, new answers are logged.
#[test]
fn retention_prunes_the_log_and_deletes_its_old_segments() {
    use std::time::{Duration, Instant};
    let (dir, s) = lab_server("decision_retention_secs = 2\n");
    let greet = |s: &Server| {
        let (status, out) = post(
            s,
            "/v1/shops/tea-oil/greeting",
            Some(TEA_KEY),
            request("greeting", "discount"),
        );
        assert_eq!(status, 200, "{out}");
        out["decision_id"].as_u64().unwrap()
    };
    let logged = |s: &Server| -> Vec<u64> {
        let (status, log) = get(s, "/v1/shops/tea-oil/decisions?limit=1000", Some(TEA_KEY));
        assert_eq!(status, 200, "{log}");
        log["decisions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_u64().unwrap())
            .collect()
    };
    // The numbers of the segment files there are.
    let segment_files = || -> Vec<u32> {
        std::fs::read_dir(dir.path().join("data/decision-log"))
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.strip_suffix(".seg").and_then(|n| n.parse().ok())
            })
            .collect()
    };
    let segments = || segment_files().len();
    let first: Vec<u64> = (0..20).map(|_| greet(&s)).collect();
    assert!(first.iter().all(|id| logged(&s).contains(id)));
    let oldest = *segment_files().iter().min().expect("a segment file");
    // Segments roll at a second (a twentieth of 2 s, at least 1 s):
    // answers over three seconds fill several.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        greet(&s);
        std::thread::sleep(Duration::from_millis(100));
    }
    // Pruned every second (at least): within a few seconds the first
    // answers are gone, and so are their segments.
    let pruned = Instant::now();
    loop {
        let now = logged(&s);
        if first.iter().all(|id| !now.contains(id)) {
            break;
        }
        assert!(
            pruned.elapsed() < Duration::from_secs(10),
            "still logged after 10 s with a retention of 2 s: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while segments() > 3 || segment_files().contains(&oldest) {
        assert!(
            Instant::now() < deadline,
            "segments kept: {:?} (the first: {oldest})",
            segment_files()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let last = greet(&s);
    assert!(logged(&s).contains(&last), "new answers are logged");
}
