//! Hardening: what the sandbox refuses, malformed output, fuzzed and
//! generated components, and kill -9 right after deploys.

mod support;

use kefu::{
    CallContext, CallError, Limits, MemoryStateStore, Runtime, RuntimeConfig, StateStore, Step,
    StepOutput,
};
use std::collections::HashMap;
use std::sync::Arc;
use support::server::{ADMIN, Server, agent, post, write_config};
use support::{example, wasm};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: None,
        limits: Limits::default(),
    })
    .unwrap()
}

fn call(rt: &Runtime, config: &str) -> Result<StepOutput, CallError> {
    let plugin = rt
        .load_file(wasm::HOSTILE.as_ref(), Step::RefundPolicy)
        .unwrap();
    let input = Step::RefundPolicy
        .parse_input(&std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap())
        .unwrap();
    let ctx = CallContext {
        shop: "s".into(),
        plugin: "refund-policy".into(),
        config_json: config.into(),
        now: 1_795_140_000,
        state: Arc::new(MemoryStateStore::default()) as Arc<dyn StateStore>,
    };
    plugin.call(rt, ctx, &input).result
}

fn message(out: Result<StepOutput, CallError>) -> String {
    match out {
        Ok(StepOutput::RefundPolicy(d)) => d.message,
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_sandbox_refuses_files_env_args_and_network() {
    // The test process itself has files, env vars and a loopback; the
    // plugin sees none of them.
    assert!(std::env::vars().count() > 0);
    let rt = runtime();
    assert_eq!(message(call(&rt, r#"{"behavior":"probe"}"#)), "nothing");
}

#[test]
fn output_that_is_not_utf8_is_refused_and_the_host_goes_on() {
    let rt = runtime();
    let err = call(&rt, r#"{"behavior":"bad-utf8"}"#).unwrap_err();
    assert!(err.to_string().to_lowercase().contains("utf-8"), "{err}");
    assert_eq!(message(call(&rt, r#"{"behavior":"ok"}"#)), "ok");
}

#[test]
fn a_plugin_cannot_store_oversized_values() {
    let rt = runtime();
    assert_eq!(
        message(call(
            &rt,
            r#"{"behavior":"fill-state","keys":3,"bytes":1000}"#
        )),
        "filled"
    );
    let err = call(&rt, r#"{"behavior":"fill-state","keys":1,"bytes":100000}"#).unwrap_err();
    assert!(
        matches!(&err, CallError::Plugin(m) if m.contains("TooLarge") && m.contains("65536")),
        "{err}"
    );
}

/// A small deterministic generator, so a failure can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_components_are_errors_never_panics() {
    let rt = runtime();
    let original = std::fs::read(wasm::REFUND_POLICY).unwrap();
    let input = Step::RefundPolicy
        .parse_input(&std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap())
        .unwrap();
    let mut rng = XorShift(0x6b65_6675_2d66_757a);
    let (mut rejected, mut loaded) = (0, 0);
    for round in 0..200 {
        let mut bytes = original.clone();
        match round % 4 {
            // Flip a few bytes anywhere.
            0 | 1 => {
                for _ in 0..1 + rng.below(8) {
                    let i = rng.below(bytes.len());
                    bytes[i] ^= 1 << rng.below(8);
                }
            }
            // Cut it short.
            2 => bytes.truncate(rng.below(bytes.len())),
            // Splice a copy of one region over another.
            _ => {
                let (from, to, len) = (
                    rng.below(bytes.len()),
                    rng.below(bytes.len()),
                    1 + rng.below(64),
                );
                let chunk: Vec<u8> = bytes[from..(from + len).min(bytes.len())].to_vec();
                let end = (to + chunk.len()).min(bytes.len());
                bytes[to..end].copy_from_slice(&chunk[..end - to]);
            }
        }
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match rt.load(&bytes, Step::RefundPolicy) {
                Ok(plugin) => {
                    let ctx = CallContext {
                        shop: "s".into(),
                        plugin: "refund-policy".into(),
                        config_json: "{}".into(),
                        now: 1_795_140_000,
                        state: Arc::new(MemoryStateStore::default()) as Arc<dyn StateStore>,
                    };
                    let _ = plugin.call(&rt, ctx, &input).result;
                    true
                }
                Err(_) => false,
            }
        }));
        match outcome {
            Ok(true) => loaded += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("round {round}: the loader panicked on a mutated component"),
        }
    }
    eprintln!(
        "200 mutated components: {rejected} rejected with an error, {loaded} still loaded (mutations in data or custom sections)"
    );
    assert!(rejected > 0);
}

/// Random components and core modules from wasm-smith, fed to the loader
/// for every step: each is refused with an error or loads (and is then
/// called); none makes the host panic. Core modules are also wrapped in a
/// component that instantiates them, so random code reaches the compiler
/// and the instantiation of a component, not just the binary reader.
#[test]
fn generated_components_are_errors_never_panics() {
    use arbitrary::{Arbitrary, Unstructured};
    let rt = runtime();
    let mut rng = XorShift(0x7761_736d_2d73_6d69);
    let steps = [
        Step::Greeting,
        Step::OrderConfirmation,
        Step::RefundPolicy,
        Step::RevisitPlanner,
    ];
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for round in 0..1000 {
        let seed: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        let mut u = Unstructured::new(&seed);
        let (kind, bytes) = match round % 3 {
            0 => match wasm_smith::Component::arbitrary(&mut u) {
                Ok(c) => ("component", c.to_bytes()),
                Err(_) => continue,
            },
            n => {
                let mut config = wasm_smith::Config::arbitrary(&mut u).unwrap_or_default();
                config.max_imports = 0;
                let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
                    continue;
                };
                let module = module.to_bytes();
                if n == 1 {
                    ("core module", module)
                } else {
                    ("wrapped core module", wrap_in_component(&module))
                }
            }
        };
        let step = steps[round % steps.len()];
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rt.load(&bytes, step).map_err(|e| e.to_string())
        }));
        let verdict = match outcome {
            Ok(Ok(_)) => "loaded",
            Ok(Err(message)) => {
                assert!(!message.is_empty(), "round {round}: an empty error");
                if message.contains("does not implement world") {
                    // Compiled in full, then refused for its exports.
                    "compiled, then refused"
                } else {
                    "refused"
                }
            }
            Err(_) => {
                let path = std::env::temp_dir().join(format!("kefu-smith-{round}.wasm"));
                std::fs::write(&path, &bytes).unwrap();
                panic!(
                    "round {round}: the loader panicked on a generated {kind}; written to {}",
                    path.display()
                );
            }
        };
        *seen.entry(kind).or_default() += 1;
        *seen.entry(verdict).or_default() += 1;
    }
    eprintln!("wasm-smith inputs by kind and verdict: {seen:?}");
    assert!(seen.get("wrapped core module").copied().unwrap_or(0) >= 200);
    assert!(
        seen.get("compiled, then refused").copied().unwrap_or(0) >= 100,
        "random code reached the compiler: {seen:?}"
    );
}

/// Proposals the host is built without (threads' shared memory, GC types)
/// are refused at load with an error that names them, for every step.
#[test]
fn components_using_proposals_left_out_of_the_host_are_refused_by_name() {
    use wasm_encoder::{
        CompositeInnerType, CompositeType, MemoryType, Module, StructType, SubType,
    };
    let rt = runtime();
    let mut shared = Module::new();
    let mut memories = wasm_encoder::MemorySection::new();
    memories.memory(MemoryType {
        minimum: 1,
        maximum: Some(1),
        memory64: false,
        shared: true,
        page_size_log2: None,
    });
    shared.section(&memories);
    let mut gc = Module::new();
    let mut types = wasm_encoder::TypeSection::new();
    types.ty().subtype(&SubType {
        is_final: true,
        supertype_idxs: Vec::new(),
        composite_type: CompositeType {
            inner: CompositeInnerType::Struct(StructType {
                fields: Box::new([]),
            }),
            shared: false,
            descriptor: None,
            describes: None,
        },
    });
    gc.section(&types);
    // wasmtime's words: "threads must be enabled for shared memories",
    // "cannot define struct types when gc types are disabled".
    for (module, feature) in [
        (shared.finish(), "threads must be enabled"),
        (gc.finish(), "gc types are disabled"),
    ] {
        for step in [Step::Greeting, Step::RefundPolicy] {
            let message = match rt.load(&wrap_in_component(&module), step) {
                Ok(_) => panic!("a component using {feature} loaded"),
                Err(e) => e.to_string(),
            };
            assert!(
                message.contains(feature),
                "the error names what is missing ({feature}): {message}"
            );
        }
    }
}

/// A component that embeds `module` and instantiates it with no imports.
fn wrap_in_component(module: &[u8]) -> Vec<u8> {
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::RawSection {
        id: wasm_encoder::ComponentSectionId::CoreModule as u8,
        data: module,
    });
    let mut instances = wasm_encoder::InstanceSection::new();
    instances.instantiate(0, std::iter::empty::<(&str, wasm_encoder::ModuleArg)>());
    component.section(&instances);
    component.finish()
}

#[test]
fn kill_9_right_after_deploys_keeps_the_last_acknowledged_version() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    std::fs::create_dir_all(shops.join("swap")).unwrap();
    std::fs::write(
        shops.join("swap/shop.toml"),
        "name = \"swap\"\napi_key_env = \"KEFU_KEY_LAB\"\n",
    )
    .unwrap();
    let config = write_config(dir.path(), &shops, "");
    let server = Server::start(&config);
    let mut last = 0;
    for i in 0..6 {
        let file = if i % 2 == 0 {
            wasm::HOSTILE
        } else {
            wasm::REFUND_POLICY
        };
        let bytes = std::fs::read(file).unwrap();
        let mut resp = agent()
            .post(server.url("/v1/shops/swap/steps/refund-policy/versions"))
            .header("authorization", format!("Bearer {ADMIN}"))
            .send(&bytes[..])
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let out: serde_json::Value =
            serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
        last = out["version"]["version"].as_u64().unwrap();
    }
    server.kill();
    let server = Server::start(&config);
    let body = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let (status, out) = post(
        &server,
        "/v1/shops/swap/refund-decision",
        Some("test-key-lab"),
        &body,
    );
    assert_eq!(status, 200, "{out}");
    assert_eq!(
        out["plugin"]["version"].as_u64(),
        Some(last),
        "the last acknowledged deploy is active after kill -9"
    );
    assert_eq!(
        out["output"]["outcome"], "Approve",
        "and it is the default refund plugin (deployed last)"
    );
}

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
/// `cargo test --release --test hardening -- --ignored --nocapture`.
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

#[test]
fn the_openapi_description_is_served_and_fuzzing_it_finds_no_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let shops = support::shops::lab(dir.path());
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    let (status, doc) = support::server::get(&s, "/v1/openapi.json", None);
    assert_eq!(status, 200);
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    for path in [
        "/v1/shops/{shop}/greeting",
        "/v1/shops/{shop}/refund-decision",
        "/v1/shops/{shop}/decisions",
        "/v1/shops/{shop}/steps/{step}/versions",
        "/v1/shops/{shop}/steps/{step}/rollback",
        "/v1/audit",
        "/v1/shops/{shop}/revisits/{id}/outcome",
        "/v1/shops/{shop}/revisit-plans",
        "/v1/shops/{shop}/customers/{customer}/do-not-contact",
    ] {
        assert!(
            paths.iter().any(|p| p.as_str() == path),
            "{path} missing from {paths:?}"
        );
    }
    assert!(doc["components"]["schemas"]["RefundRequest"].is_object());

    // schemathesis (installed by plugins/setup.sh) against the real server,
    // bounded: a fixed number of cases per operation and a time limit.
    let tool = std::env::var_os("KEFU_SCHEMATHESIS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/kefu/venv/bin/schemathesis")
        });
    assert!(
        tool.exists(),
        "{} is missing: run `source plugins/setup.sh && kefu_setup_test_tools` (tests/run.sh does)",
        tool.display()
    );
    // Every operation with a shop key, then the admin operations with the
    // admin token (deploys of random bytes, rollbacks to random versions).
    let runs: [(&str, &[&str]); 2] = [
        ("Authorization: Bearer test-key-tea-oil", &[]),
        (
            "Authorization: Bearer test-admin-token",
            &["--include-tag", "admin"],
        ),
    ];
    for (auth, filter) in runs {
        let mut child = std::process::Command::new(&tool)
            // schemathesis keeps a cache in its working directory.
            .current_dir(dir.path())
            .args(["run", &s.url("/v1/openapi.json"), "-H", auth])
            .args(filter)
            .args([
                "--checks",
                "not_a_server_error",
                "-n",
                "25",
                "--request-timeout",
                "10",
                "--seed",
                "7",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("schemathesis ran past 300 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let summary: Vec<&str> = text.lines().filter(|l| l.contains("generated")).collect();
        eprintln!("schemathesis ({auth}): {summary:?}");
        assert!(
            out.status.success(),
            "schemathesis found failures:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The server is still healthy after it.
    assert_eq!(support::server::get(&s, "/healthz", None).0, 200);
}
