//! Hot swap while traffic flows: file and API deploys, bad deploys that
//! never replace a working version, rollback, restart.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::server::{ADMIN, Server, agent, get, post, write_config};
use support::{example, wasm};

const KEY: &str = "test-key-lab";

/// A shop `swap` whose refund plugin is `refund.wasm` in its folder.
fn swap_shop(dir: &Path, initial: &str) -> (PathBuf, Server) {
    let shops = dir.join("shops");
    let shop = shops.join("swap");
    std::fs::create_dir_all(&shop).unwrap();
    std::fs::copy(initial, shop.join("refund.wasm")).unwrap();
    std::fs::write(
        shop.join("shop.toml"),
        "name = \"swap\"\napi_key_env = \"KEFU_KEY_LAB\"\n\n[steps.refund-policy]\nplugin = \"refund.wasm\"\n",
    )
    .unwrap();
    let config = write_config(dir, &shops, "");
    (shop, Server::start(&config))
}

fn refund_body() -> Vec<u8> {
    std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap()
}

fn digest_of(path: &str) -> String {
    kefu::runtime_digest(&std::fs::read(path).unwrap())
}

/// (status, version, digest) of one refund call.
fn call(s: &Server, body: &[u8]) -> (u16, u64, String, Value) {
    let (status, out) = post(s, "/v1/shops/swap/refund-decision", Some(KEY), body);
    let version = out["plugin"]["version"].as_u64().unwrap_or(0);
    let digest = out["plugin"]["digest"].as_str().unwrap_or("").to_string();
    (status, version, digest, out)
}

fn deploy(s: &Server, file: &str) -> (u16, Value) {
    support::server::deploy_file(s, "swap", "refund-policy", file)
}

/// Write a file the way an editor or `cp` does: in place, not atomically.
fn write_in_place(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

struct Sample {
    start: Instant,
    end: Instant,
    status: u16,
    version: u64,
}

#[test]
fn fifty_swaps_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (plugin_file, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    let plugin_file = plugin_file.join("refund.wasm");
    let body = refund_body();
    let behaviours = [wasm::HOSTILE, wasm::REFUND_POLICY];
    let stop = AtomicBool::new(false);
    let samples = Mutex::new(Vec::<Sample>::new());
    // (completed at, version, swap started at) of each swap.
    let mut swaps: Vec<(Instant, u64, Instant)> = Vec::new();
    let mut file_latency = Vec::new();

    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    let (status, version, _, _) = call(&s, &body);
                    let end = Instant::now();
                    samples.lock().unwrap().push(Sample {
                        start,
                        end,
                        status,
                        version,
                    });
                }
            });
        }
        for i in 0..50 {
            let target = behaviours[i % 2];
            let want = digest_of(target);
            let started = Instant::now();
            if i % 4 < 2 {
                // By file: time from the end of the write to the first
                // answer of the new version.
                write_in_place(&plugin_file, &std::fs::read(target).unwrap());
                let written = Instant::now();
                let deadline = written + Duration::from_secs(10);
                loop {
                    let (status, version, digest, out) = call(&s, &body);
                    assert_eq!(status, 200, "{out}");
                    if digest == want {
                        file_latency.push(written.elapsed());
                        swaps.push((Instant::now(), version, started));
                        break;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "swap {i} by file never took effect"
                    );
                }
            } else {
                let (status, out) = deploy(&s, target);
                assert_eq!(status, 201, "{out}");
                swaps.push((
                    Instant::now(),
                    out["version"]["version"].as_u64().unwrap(),
                    started,
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
    });

    let samples = samples.into_inner().unwrap();
    let failed = samples.iter().filter(|x| x.status != 200).count();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during swaps",
        samples.len()
    );
    // A request started after a swap completed is never answered by an
    // older version; one that also ended before the next swap began was
    // answered by exactly that swap's version.
    for (k, (done, version, _)) in swaps.iter().enumerate() {
        let next_start = swaps.get(k + 1).map(|s| s.2);
        for x in samples.iter().filter(|x| x.start > *done) {
            assert!(
                x.version >= *version,
                "swap {k}: a later request got the old version {}",
                x.version
            );
            if next_start.is_none_or(|n| x.end < n) {
                assert_eq!(
                    x.version, *version,
                    "swap {k}: a request after it was answered by version {}",
                    x.version
                );
            }
        }
    }
    let versions: Vec<u64> = swaps.iter().map(|s| s.1).collect();
    assert!(
        versions.windows(2).all(|w| w[1] > w[0]),
        "every swap is a new version: {versions:?}"
    );
    file_latency.sort();
    let p50 = file_latency[file_latency.len() / 2];
    let max = *file_latency.last().unwrap();
    eprintln!(
        "hot swap: {} requests, 0 failed; {} file swaps, write-to-new-version p50 {:?} max {:?}",
        samples.len(),
        file_latency.len(),
        p50,
        max
    );
}

fn failures(s: &Server) -> Vec<Value> {
    let (_, plugins) = get(s, "/v1/plugins", Some(ADMIN));
    plugins["failures"].as_array().unwrap().clone()
}

/// Wait until a failure not among `before` is reported; its reason. (The
/// listing holds the failures that stand: a reload replaces its shop's.)
fn next_failure(s: &Server, before: &[Value]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(new) = failures(s).iter().find(|f| !before.contains(f)) {
            return new["reason"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no failure was reported");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn bad_deploys_never_replace_a_working_version() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    let file = shop.join("refund.wasm");
    let body = refund_body();
    let (_, v1, d1, _) = call(&s, &body);
    let still_v1 = |what: &str| {
        let (status, version, digest, out) = call(&s, &body);
        assert_eq!(
            (status, version, &digest),
            (200, v1, &d1),
            "after {what}: {out}"
        );
    };

    let good = std::fs::read(wasm::HOSTILE).unwrap();
    let n = failures(&s);
    write_in_place(&file, &good[..good.len() / 2]);
    let reason = next_failure(&s, &n);
    assert!(reason.contains("invalid component"), "{reason}");
    still_v1("a half-written file");

    let n = failures(&s);
    write_in_place(&file, b"this is not wasm");
    assert!(next_failure(&s, &n).contains("not a WebAssembly file"));
    still_v1("a text file");

    let n = failures(&s);
    write_in_place(&file, &std::fs::read(wasm::GREETING).unwrap());
    let reason = next_failure(&s, &n);
    assert!(
        reason.contains("does not implement world `refund-policy`: missing export `decide`"),
        "{reason}"
    );
    still_v1("a component of the wrong world");

    let n = failures(&s);
    let toml = shop.join("shop.toml");
    let good_toml = std::fs::read_to_string(&toml).unwrap();
    write_in_place(&toml, b"name = \"swap\"\n[steps.refund-policy\nplugin = ");
    let reason = next_failure(&s, &n);
    assert!(
        reason.contains("shop.toml") && reason.contains("keeps its active versions"),
        "{reason}"
    );
    still_v1("a shop.toml that does not parse");
    write_in_place(&toml, good_toml.as_bytes());

    let (status, out) = deploy(&s, wasm::WRONG_SIGNATURE);
    assert_eq!(status, 422, "{out}");
    assert_eq!(out["error"]["code"], "plugin_rejected");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("export `decide` has the wrong type"),
        "{out}"
    );
    still_v1("an API deploy of the wrong signature");

    // The metric and the audit say so too.
    let (_, metrics) = get(&s, "/metrics", None);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains(r#"kefu_deploys_total{shop="swap",outcome="rejected"}"#)
    );
    let (_, audit) = get(&s, "/v1/audit?shop=swap", Some(ADMIN));
    let rejected = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "rejected")
        .count();
    assert!(rejected >= 5, "{audit}");

    // Finishing the write deploys it.
    write_in_place(&file, &good);
    let deadline = Instant::now() + Duration::from_secs(10);
    while call(&s, &body).2 == d1 {
        assert!(
            Instant::now() < deadline,
            "the completed file was never deployed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn rollback_brings_back_v1_and_the_audit_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    let body = refund_body();
    let outcome = |s: &Server| {
        let (status, version, _, out) = call(s, &body);
        assert_eq!(status, 200, "{out}");
        (version, out["output"]["outcome"].clone())
    };
    let (v1, first) = outcome(&s);
    assert_eq!((v1, first.as_str()), (1, Some("Approve")));
    let (status, out) = deploy(&s, wasm::HOSTILE);
    assert_eq!(status, 201, "{out}");
    // The new version as the listing shows it, with its config as JSON.
    assert_eq!(out["version"]["version"], 2, "{out}");
    assert_eq!(out["version"]["status"], "active", "{out}");
    assert!(out["version"]["config"].is_object(), "{out}");
    assert!(out["version"].get("config_json").is_none(), "{out}");
    let (v2, second) = outcome(&s);
    assert_eq!(v2, 2);
    assert!(second.get("Reject").is_some(), "{second}");

    let (status, out) = support::server::roll_back(&s, "swap", "refund-policy");
    assert_eq!(status, 200, "{out}");
    assert_eq!(outcome(&s), (1, first.clone()), "v1 answers again");

    let (_, audit) = get(&s, "/v1/audit?shop=swap", Some(ADMIN));
    let events: Vec<(String, u64)> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .filter(|e| e["step"] == "refund-policy")
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["version"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("activated".to_string(), 1),
            ("activated".into(), 2),
            ("rolled-back".into(), 1)
        ]
    );
    let (_, versions) = get(
        &s,
        "/v1/shops/swap/steps/refund-policy/versions",
        Some(ADMIN),
    );
    assert_eq!(versions["active"], 1);
    assert_eq!(versions["versions"][1]["status"], "inactive");
    assert_eq!(versions["versions"][1]["source"], "api");

    // Each decision names the version that made it.
    let (_, log) = get(&s, "/v1/shops/swap/decisions", Some(ADMIN));
    let made_by: Vec<u64> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|d| d["version"].as_u64().unwrap())
        .collect();
    assert_eq!(made_by, [1, 2, 1]);

    // A restart comes back with v1 (the rollback sticks) without compiling.
    let config = s.config.clone();
    drop(s);
    let s = Server::start(&config);
    assert_eq!(outcome(&s), (1, first));
    let (_, plugins) = get(&s, "/v1/plugins", Some(ADMIN));
    assert_eq!(
        plugins["compilations"], 0,
        "a restart must load compiled code from the cache"
    );
}

/// `kefu_shop_reloads_total{trigger="file-watcher"}` from /metrics, 0 if absent.
fn watcher_reloads(s: &Server) -> u64 {
    let (_, metrics) = get(s, "/metrics", None);
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find(|l| l.starts_with(r#"kefu_shop_reloads_total{trigger="file-watcher"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

/// Reading a shop's files (which every reload does) must not look like a
/// change: once, this reloaded every shop in a loop and took a quarter of
/// the server's CPU.
#[test]
fn the_watcher_reloads_on_writes_only() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let other = dir.path().join("shops").join(format!("idle-{i}"));
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("shop.toml"), "name = \"idle\"\n").unwrap();
    }
    let (shop, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    // Reads of the files by anyone, the server included, are not changes.
    for _ in 0..5 {
        std::fs::read(shop.join("shop.toml")).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(watcher_reloads(&s), 0, "reloads with no file written");

    // One write is one reload (a write may show as two events a debounce
    // apart), and then the server is quiet again.
    write_in_place(
        &shop.join("refund.wasm"),
        &std::fs::read(wasm::REFUND_POLICY).unwrap(),
    );
    std::thread::sleep(Duration::from_millis(1_000));
    let after_write = watcher_reloads(&s);
    assert!((1..=2).contains(&after_write), "{after_write} reloads");
    std::thread::sleep(Duration::from_millis(1_000));
    assert_eq!(watcher_reloads(&s), after_write, "reloads kept coming");
}

/// kill -9 in the middle of file-watcher swaps: every version the watcher
/// activated before the kill is still in the history after the restart,
/// and the shop then runs what its file holds, never an older version.
#[test]
fn kill_9_during_file_watcher_swaps_keeps_history_and_follows_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (shop, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    let config = s.config.clone();
    let files = [wasm::HOSTILE, wasm::REFUND_POLICY];
    let body = refund_body();
    let mut acked: Vec<(u64, String)> = Vec::new();
    for i in 0..6 {
        let file = files[i % 2];
        let before = call(&s, &body).1;
        write_in_place(&shop.join("refund.wasm"), &std::fs::read(file).unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, version, digest, out) = call(&s, &body);
            assert_eq!(status, 200, "{out}");
            if version > before && digest == digest_of(file) {
                acked.push((version, digest));
                break;
            }
            assert!(Instant::now() < deadline, "swap {i} never took effect");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // One more write, and kill -9 while the watcher debounces, compiles or
    // records it (a different moment in each of these three rounds).
    let mut s = s;
    for (round, delay_ms) in [20u64, 90, 160].into_iter().enumerate() {
        let file = files[round % 2];
        write_in_place(&shop.join("refund.wasm"), &std::fs::read(file).unwrap());
        std::thread::sleep(Duration::from_millis(delay_ms));
        s.kill();
        s = Server::start(&config);
        let (_, versions) = get(
            &s,
            "/v1/shops/swap/steps/refund-policy/versions",
            Some(ADMIN),
        );
        let listed: Vec<u64> = versions["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["version"].as_u64().unwrap())
            .collect();
        for (version, _) in &acked {
            assert!(
                listed.contains(version),
                "activated version {version} lost after kill -9: {versions}"
            );
        }
        let (status, version, digest, out) = call(&s, &body);
        assert_eq!(status, 200, "{out}");
        assert_eq!(digest, digest_of(file), "the shop runs its file: {out}");
        assert!(
            version >= acked.last().unwrap().0,
            "an older version came back: {out}"
        );
        acked.push((version, digest));
    }
}

/// Field `n` (1-based, as in proc(5)) of a `/proc/.../stat` line.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    // Fields after the `(comm)` start at field 3.
    stat.rsplit_once(") ")?.1.split(' ').nth(n - 3)
}

/// (name, scheduling policy) of each thread of each child process of
/// `pid` (Linux: policy 5 is SCHED_IDLE).
fn children_threads(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.filter_map(|p| p.ok()) {
        let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        if stat_field(&stat, 4) != Some(&pid.to_string()) {
            continue;
        }
        let Ok(tasks) = std::fs::read_dir(p.path().join("task")) else {
            continue;
        };
        for t in tasks.filter_map(|t| t.ok()) {
            let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            if let Some(policy) = stat_field(&stat, 41).and_then(|p| p.parse().ok()) {
                out.push((name.trim().to_string(), policy));
            }
        }
    }
    out
}

/// #31: an API deploy compiles in a worker process whose every thread is
/// in the idle scheduling class, the answer says how long it took, and
/// precompiled native code is never accepted.
#[test]
fn a_deploy_compiles_in_the_idle_class() {
    let dir = tempfile::tempdir().unwrap();
    let (_shop, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    let python = example("shops/apparel/plugins/refund.wasm");
    assert!(
        python.exists(),
        "{} is missing: run plugins/setup.sh",
        python.display()
    );
    let bytes = support::unique(std::fs::read(&python).unwrap());
    let path = dir.path().join("python-refund.wasm");
    std::fs::write(&path, &bytes).unwrap();

    let pid = s.pid();
    let seen = Mutex::new(Vec::<(String, u32)>::new());
    let done = AtomicBool::new(false);
    let (status, out) = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                // Once exec'd, a worker's threads are named `kefu` (the
                // instant between fork and exec is the server's thread).
                let workers = children_threads(pid).into_iter().filter(|t| t.0 == "kefu");
                seen.lock().unwrap().extend(workers);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let answer = deploy(&s, path.to_str().unwrap());
        done.store(true, Ordering::Relaxed);
        answer
    });
    assert_eq!(status, 201, "{out}");
    assert!(out["took_ms"].as_u64().unwrap() > 0, "{out}");
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter().any(|(name, _)| name == "kefu"),
        "no compile worker seen: {seen:?}"
    );
    let outside: Vec<_> = seen.iter().filter(|(_, policy)| *policy != 5).collect();
    assert!(
        outside.is_empty(),
        "{} of {} samples of compile threads outside the idle class: {:?}",
        outside.len(),
        seen.len(),
        &outside[..outside.len().min(5)]
    );

    // What kefu compiled and cached is native code: uploaded, refused.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("kefu-cache");
    let native = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a compiled artifact in the cache");
    let (status, out) = deploy(&s, native.to_str().unwrap());
    assert_eq!(status, 422, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a WebAssembly file"),
        "{out}"
    );
}

/// #31: a component that shares its code with one compiled before (two
/// builds of a Python policy carry the same interpreter) compiles only
/// what is new: the compile worker's functions come from the cache.
#[test]
fn a_second_python_component_compiles_from_the_function_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (_shop, s) = swap_shop(dir.path(), wasm::REFUND_POLICY);
    let python = std::fs::read(example("shops/apparel/plugins/refund.wasm")).unwrap();
    let deploy_copy = |name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, support::unique(python.clone())).unwrap();
        let (status, out) = deploy(&s, path.to_str().unwrap());
        assert_eq!(status, 201, "{out}");
        compiled_functions(&s)
    };
    let (cached_before, compiled_before) = deploy_copy("first.wasm");
    assert!(
        cached_before + compiled_before > 1_000,
        "a Python component has thousands of functions: {cached_before} from the cache, {compiled_before} compiled"
    );
    let (cached, compiled) = deploy_copy("second.wasm");
    let (cached, compiled) = (cached - cached_before, compiled - compiled_before);
    assert!(
        cached > 0 && compiled * 10 < cached,
        "the second copy should compile from the cache: {cached} from the cache, {compiled} compiled"
    );
}

/// `kefu_compiled_functions_total` from the cache and from the compiler.
fn compiled_functions(s: &Server) -> (u64, u64) {
    let (_, metrics) = get(s, "/metrics", None);
    let count = |from: &str| {
        let key = format!(r#"kefu_compiled_functions_total{{from="{from}"}}"#);
        metrics
            .as_str()
            .unwrap()
            .lines()
            .find(|l| l.starts_with(&key))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse::<f64>().unwrap() as u64)
    };
    (count("cache"), count("compiler"))
}

/// #24: canaries started, raised, promoted and aborted while traffic
/// flows lose no request, and between two changes every answer comes from
/// the version the last change set for that customer.
#[test]
fn canary_changes_under_load_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    support::shops::hostile_shop(&shops, "swap", "ok");
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    let template: Value = serde_json::from_slice(&refund_body()).unwrap();
    let stop = AtomicBool::new(false);
    let next_customer = std::sync::atomic::AtomicU64::new(0);
    // (start, end, status, version, canary)
    let samples = Mutex::new(Vec::<(Instant, Instant, u16, u64, bool)>::new());
    // (started, done, stable version, canary version if one runs) per
    // change.
    let mut changes: Vec<(Instant, Instant, u64, Option<u64>)> = Vec::new();
    let canary = "/v1/shops/swap/steps/refund-policy/canary";
    let admin = |method: &str, path: &str, body: &str| -> (u16, Value) {
        let url = s.url(path);
        if method == "POST" {
            return support::server::try_post(
                &url,
                Some(ADMIN),
                "application/json",
                body.as_bytes(),
            )
            .unwrap();
        }
        let mut resp = agent()
            .delete(&url)
            .header("authorization", format!("Bearer {ADMIN}"))
            .call()
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    };

    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let n = next_customer.fetch_add(1, Ordering::Relaxed) % 500;
                    let mut body = template.clone();
                    body["customer"]["id"] = Value::String(format!("buyer-{n}"));
                    let start = Instant::now();
                    let (status, out) = post(
                        &s,
                        "/v1/shops/swap/refund-decision",
                        Some(KEY),
                        body.to_string(),
                    );
                    let end = Instant::now();
                    let version = out["plugin"]["version"].as_u64().unwrap_or(0);
                    let in_canary = out["canary"].as_bool().unwrap_or(false);
                    samples
                        .lock()
                        .unwrap()
                        .push((start, end, status, version, in_canary));
                }
            });
        }
        let mut stable = 1;
        for i in 0..12 {
            // A new version as a canary of 30%...
            let started = Instant::now();
            let config = format!(r#"{{"behavior":"ok","round":{i}}}"#);
            let (ct, form) = kefu_tests::multipart(&[
                ("config", "c.json", "application/json", config.as_bytes()),
                ("canary", "canary", "text/plain", b"30"),
            ]);
            let url = s.url("/v1/shops/swap/steps/refund-policy/versions");
            let (status, out) = support::server::try_post(&url, Some(ADMIN), &ct, &form).unwrap();
            assert_eq!(status, 201, "{out}");
            let version = out["version"]["version"].as_u64().unwrap();
            changes.push((started, Instant::now(), stable, Some(version)));
            std::thread::sleep(Duration::from_millis(60));
            // ...raised to 70%...
            let started = Instant::now();
            let (status, out) = admin("POST", canary, r#"{"percent":70}"#);
            assert_eq!(status, 201, "{out}");
            changes.push((started, Instant::now(), stable, Some(version)));
            std::thread::sleep(Duration::from_millis(60));
            // ...then promoted or aborted.
            let started = Instant::now();
            let (status, out) = if i % 2 == 0 {
                admin("POST", &format!("{canary}/promote"), "")
            } else {
                admin("DELETE", canary, "")
            };
            assert_eq!(status, 200, "{out}");
            if i % 2 == 0 {
                stable = version;
            }
            changes.push((started, Instant::now(), stable, None));
            std::thread::sleep(Duration::from_millis(60));
        }
        stop.store(true, Ordering::Relaxed);
    });

    let samples = samples.into_inner().unwrap();
    let failed = samples.iter().filter(|x| x.2 != 200).count();
    assert_eq!(failed, 0, "{failed} of {} requests failed", samples.len());
    // Between two changes, every answer is from the stable version or
    // (marked canary) the running canary's.
    let mut checked = 0;
    for (k, (_, done, stable, canary)) in changes.iter().enumerate() {
        let next = changes.get(k + 1).map(|c| c.0);
        for x in samples
            .iter()
            .filter(|x| x.0 > *done && next.is_none_or(|n| x.1 < n))
        {
            checked += 1;
            match (x.4, canary) {
                (true, Some(c)) => assert_eq!(x.3, *c, "change {k}: canary answer"),
                (true, None) => panic!("change {k}: a canary answer with no canary"),
                (false, _) => assert_eq!(x.3, *stable, "change {k}: stable answer"),
            }
        }
    }
    assert!(checked > 100, "only {checked} answers fell between changes");
    eprintln!(
        "canary changes: {} requests, 0 failed, {checked} checked against the change before them",
        samples.len()
    );
}
