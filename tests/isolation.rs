//! One shop cannot take another's service: per-shop quotas (429 with
//! Retry-After while the others answer) and the noisy-neighbour
//! measurement (a looping plugin beside a fast shop).

mod support;

use std::collections::HashMap;
use support::example;
use support::server::{Server, agent, post, write_config};

/// Shop B of the isolation tests: a greeting of the apparel shop.
fn apparel_greeting(s: &Server, body: &[u8]) -> (u16, serde_json::Value) {
    post(
        s,
        "/v1/shops/apparel/greeting",
        Some(support::server::APPAREL_KEY),
        body,
    )
}

/// Latencies (ms), sorted, with their p99 and a one-line summary.
struct Latencies(Vec<f64>);

impl Latencies {
    fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Latencies(v)
    }

    /// The value `per_mille`/1000 of the way up (nearest rank).
    fn at(&self, per_mille: usize) -> f64 {
        self.0[(self.0.len() * per_mille).div_ceil(1000).max(1) - 1]
    }

    fn p99(&self) -> f64 {
        self.at(990)
    }

    fn summary(&self) -> String {
        format!(
            "p50 {:.2} p90 {:.2} p99 {:.2} p99.5 {:.2} max {:.2} ms",
            self.at(500),
            self.at(900),
            self.at(990),
            self.at(995),
            self.at(1000)
        )
    }
}

/// Where shop A is served in a noisy-neighbour run.
#[derive(Clone, Copy, PartialEq)]
enum ShopA {
    /// On B's server: the isolation under test.
    Beside,
    /// On a second `kefu serve` of its own (own process, data and disk
    /// writes): the control. What B loses then is what the machine's two
    /// cores cost, not what sharing a server costs.
    OnItsOwnServer,
}

/// Shop A's plugin loops into its timeout under 100 concurrent clients
/// that honour `Retry-After`; shop B's greeting p99 is measured before and
/// during that. Returns (unloaded p99, loaded p99, A's statuses).
///
/// The timeout is the wall clock's and applies to every shop: a stall of
/// the whole VM that lasts as long as the timeout times out B's call too. The measurement
/// uses 300 ms (more of A's timeouts per second); the test that runs in
/// CI, beside the other tests' servers and compilers, the 1 s default
/// (B once timed out there at 300 ms, in the unloaded phase).
fn noisy_neighbour(timeout_ms: u64, place: ShopA) -> (f64, f64, HashMap<u16, usize>) {
    let server = || {
        let dir = tempfile::tempdir().unwrap();
        let shops = support::shops::lab(dir.path());
        let config = write_config(
            dir.path(),
            &shops,
            // Default quotas: shop A gets 8 calls looping at once.
            &format!("[limits]\ntimeout_ms = {timeout_ms}\n"),
        );
        (Server::start(&config), dir)
    };
    let (s, _dir) = server();
    let own = (place == ShopA::OnItsOwnServer).then(server);
    let a = own.as_ref().map_or(&s, |(a, _)| a);
    let greeting = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();
    let refund = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let b_latencies = || {
        Latencies::new(
            (0..1000)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let (status, out) = apparel_greeting(&s, &greeting);
                    assert_eq!(status, 200, "{out}");
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect(),
        )
    };
    let unloaded = b_latencies();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let statuses = std::sync::Mutex::new(HashMap::<u16, usize>::new());
    let loaded = std::thread::scope(|scope| {
        for _ in 0..100 {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut resp = agent()
                        .post(a.url("/v1/shops/slow/refund-decision"))
                        .header("authorization", "Bearer test-key-lab")
                        .send(&refund[..])
                        .unwrap();
                    let status = resp.status().as_u16();
                    let retry_header = resp.headers().get("retry-after").is_some();
                    let out: serde_json::Value =
                        serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    if status == 429 {
                        assert_eq!(out["error"]["code"], "quota_exceeded");
                        assert!(retry_header, "a 429 says when to retry");
                        // A well-behaved client waits as told (capped here
                        // so the test ends).
                        let wait = out["error"]["retry_after_secs"]
                            .as_u64()
                            .unwrap_or(1)
                            .min(2);
                        std::thread::sleep(std::time::Duration::from_secs(wait));
                    }
                }
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        let loaded = b_latencies();
        // While A's slots are taken, even a malformed request of A's is
        // refused for the quota, before its body is parsed.
        let early = (0..50).any(|_| {
            let (status, out) = post(
                a,
                "/v1/shops/slow/refund-decision",
                Some("test-key-lab"),
                b"{not json",
            );
            assert!(status == 429 || status == 400, "{status} {out}");
            std::thread::sleep(std::time::Duration::from_millis(10));
            status == 429 && out["error"]["code"] == "quota_exceeded"
        });
        assert!(
            early,
            "an over-quota shop's request was parsed before it was refused"
        );
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        loaded
    });
    let statuses = statuses.into_inner().unwrap();
    eprintln!(
        "shop B greeting p99: unloaded {:.2} ms, while shop A loops {:.2} ms ({}); shop A answers by status: {statuses:?}\n  unloaded: {}\n  loaded:   {}",
        unloaded.p99(),
        loaded.p99(),
        match place {
            ShopA::Beside => "on the same server",
            ShopA::OnItsOwnServer => "on a server of its own",
        },
        unloaded.summary(),
        loaded.summary()
    );
    let metrics = |server: &Server| {
        let (_, metrics) = support::server::get(server, "/metrics", None);
        metrics.as_str().unwrap().to_string()
    };
    let a_metrics = metrics(a);
    assert!(a_metrics.contains(r#"kefu_quota_rejections_total{shop="slow""#));
    // A's looping calls left the async threads for the slow lane; none of
    // B's were ever taken for slow, however the threads were scheduled.
    assert!(a_metrics.contains(r#"kefu_calls_offloaded_total{shop="slow"}"#));
    assert!(
        !metrics(&s).contains(r#"kefu_calls_offloaded_total{shop="apparel"}"#),
        "a fast shop was moved to the slow lane"
    );
    (unloaded.p99(), loaded.p99(), statuses)
}

/// Shop A only ever got timeouts (its plugin loops) and 429s (its quota).
fn assert_held_to_timeouts_and_quota(statuses: &HashMap<u16, usize>) {
    assert!(
        statuses.get(&504).copied().unwrap_or(0) >= 1,
        "shop A's plugin timed out: {statuses:?}"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 1,
        "shop A was held to its quota: {statuses:?}"
    );
    assert_eq!(
        statuses.len(),
        2,
        "shop A only ever got timeouts and 429s: {statuses:?}"
    );
}

/// One shop sending large bodies fast must not fill the disk that every
/// shop's decision log lives on: its logged bytes are budgeted per window.
#[test]
fn a_shop_that_logs_too_much_gets_429_and_the_others_keep_answering() {
    let dir = tempfile::tempdir().unwrap();
    let shops = support::shops::lab(dir.path());
    let config = write_config(dir.path(), &shops, "[quotas]\nlog_kib_per_window = 2\n");
    let s = Server::start(&config);
    let greeting = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();
    let mut big = serde_json::from_slice::<serde_json::Value>(&greeting).unwrap();
    big["message"] = "便宜".repeat(200).into();
    let big = serde_json::to_vec(&big).unwrap();
    let tea = |body: &[u8]| {
        post(
            &s,
            "/v1/shops/tea-oil/greeting",
            Some(support::server::TEA_KEY),
            body,
        )
    };
    let (status, _) = tea(&big);
    assert_eq!(status, 200, "the first 1.3 KiB fit in 2 KiB");
    // The next one is over (a few tries, in case the 10 s window turned).
    let err = (0..3)
        .map(|_| tea(&big))
        .find(|(status, _)| *status == 429)
        .map(|(_, err)| err)
        .expect("a shop over its log budget is refused");
    assert_eq!(err["error"]["code"], "quota_exceeded");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decision log"),
        "{err}"
    );
    assert!(err["error"]["retry_after_secs"].as_u64().unwrap() >= 1);
    // Another shop has its own budget.
    let (status, out) = apparel_greeting(&s, &greeting);
    assert_eq!(status, 200, "{out}");
}

#[test]
fn a_shop_over_its_quota_gets_429_and_the_others_keep_answering() {
    // Every one of shop B's 2,000 calls answered 200 (asserted inside).
    let (_, _, statuses) = noisy_neighbour(1000, ShopA::Beside);
    assert_held_to_timeouts_and_quota(&statuses);
}

/// The noisy-neighbour target as a measurement: p99 within 2x. Timing on a
/// shared 2-core VM is too noisy for CI (the unloaded p99 alone moves
/// between 3 and 7 ms with fsync jitter), so it runs on request:
/// `cargo test --release --test isolation -- --ignored --nocapture`.
#[test]
#[ignore = "timing measurement; figures in docs/PERFORMANCE.md"]
fn noisy_neighbour_p99_stays_within_twice_the_unloaded_value() {
    let (unloaded, loaded, _) = noisy_neighbour(300, ShopA::Beside);
    assert!(
        loaded <= 2.0 * unloaded,
        "shop B's p99 went from {unloaded:.2} ms to {loaded:.2} ms"
    );
}

/// The control for the measurement above: the same load, with shop A on a
/// server of its own. It checks what the run itself checks (every one of
/// B's calls answered, A held to timeouts and 429s) and prints B's
/// figures; `tests/load/noisy-neighbour.sh` alternates the two and counts
/// the runs within 2x. No bound is asserted: this measures the machine.
#[test]
#[ignore = "timing measurement; figures in docs/PERFORMANCE.md"]
fn noisy_neighbour_control_with_shop_a_on_its_own_server() {
    let (_, _, statuses) = noisy_neighbour(300, ShopA::OnItsOwnServer);
    assert_held_to_timeouts_and_quota(&statuses);
}

/// #29: 1,000 shops that all reuse their greeting's and order
/// confirmation's instances, each step of every shop called twice by 8
/// clients at once, then another step (a fresh instance per call) of 50
/// of them: each answers 200. By default 1,000 instances stay idle (as
/// many as shops: calls of one step spread over 1,000 shops each find
/// one), the engine has 1,000 slots more for the calls running, and the
/// 2,000 idle instances the two steps would keep are held to the cap.
/// Without a cap across shops they took every slot, and the other calls
/// failed with 503 ("maximum concurrent limit ... for component instances
/// reached").
#[test]
fn a_thousand_shops_that_all_reuse_instances_answer_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    for i in 1..=1000 {
        let shop = shops.join(format!("shop-{i}"));
        std::fs::create_dir_all(&shop).unwrap();
        std::fs::write(
            shop.join("shop.toml"),
            format!(
                "name = \"shop {i}\"\napi_key_env = \"KEFU_KEY_TEA_OIL\"\n\
                 [steps.greeting]\ninstances = \"reuse\"\n\
                 [steps.order-confirmation]\ninstances = \"reuse\"\n\
                 [steps.refund-policy]\ninstances = \"fresh\"\n"
            ),
        )
        .unwrap();
    }
    let config = write_config(
        dir.path(),
        &shops,
        "[quotas]\nlog_kib_per_window = 100000000\n",
    );
    let server = Server::start(&config);
    let greeting = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();
    let order = std::fs::read(example("requests/order-confirmation/ok-with-remark.json")).unwrap();
    let statuses = std::sync::Mutex::new(HashMap::<u16, usize>::new());
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for client in 0..8 {
            let (server, greeting, order, statuses, failures) =
                (&server, &greeting, &order, &statuses, &failures);
            s.spawn(move || {
                // Two passes over every shop's two steps, each client its
                // share.
                for n in (client..4000).step_by(8) {
                    let shop = n % 1000 + 1;
                    let (step, body) = if n % 2000 < 1000 {
                        ("greeting", greeting)
                    } else {
                        ("order-confirmation", order)
                    };
                    let (status, out) = post(
                        server,
                        &format!("/v1/shops/shop-{shop}/{step}"),
                        Some(support::server::TEA_KEY),
                        body,
                    );
                    *statuses.lock().unwrap().entry(status).or_default() += 1;
                    if status != 200 {
                        failures.lock().unwrap().push(out);
                    }
                }
            });
        }
    });
    // Then calls of a step that takes a fresh instance each: they need a
    // slot the idle instances must have left.
    let refund = std::fs::read(example("requests/refund-policy/no-reason.json")).unwrap();
    for shop in (1..=1000).step_by(20) {
        let (status, out) = post(
            &server,
            &format!("/v1/shops/shop-{shop}/refund-policy"),
            Some(support::server::TEA_KEY),
            &refund,
        );
        *statuses.lock().unwrap().entry(status).or_default() += 1;
        if status != 200 {
            failures.lock().unwrap().push(out);
        }
    }
    let statuses = statuses.into_inner().unwrap();
    let failures = failures.into_inner().unwrap();
    assert_eq!(
        statuses.get(&200),
        Some(&4050),
        "{statuses:?}; first failures: {:?}",
        &failures[..failures.len().min(3)]
    );
    let metrics = support::server::metrics(&server);
    let idle = metrics
        .lines()
        .find_map(|l| l.strip_prefix("kefu_reused_instances_idle "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("the idle gauge");
    eprintln!("{idle} reused instances idle after the calls");
    // One a shop (the cap was 500), never past the cap.
    assert_eq!(idle, 1000.0);
}
