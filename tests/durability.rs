//! kill -9 right after a 200, right after deploys, and in the middle of
//! load and hot swaps, loses nothing that was acknowledged.

mod support;

use std::collections::BTreeSet;
use support::server::{ADMIN, Server, TEA_KEY, agent, get, post, try_post, write_config};
use support::{example, wasm};

#[test]
fn kill_9_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &example("shops"), "");
    let server = Server::start(&config);
    let refund = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let greeting = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();

    // Four writers at once, so flushes are shared between requests.
    let acked: BTreeSet<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let (server, refund, greeting) = (&server, &refund, &greeting);
                scope.spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..50 {
                        let (path, body) = if (i + w) % 2 == 0 {
                            ("/v1/shops/tea-oil/refund-decision", refund)
                        } else {
                            ("/v1/shops/tea-oil/greeting", greeting)
                        };
                        let (status, out) = post(server, path, Some(TEA_KEY), body);
                        assert_eq!(status, 200, "{out}");
                        ids.push(out["decision_id"].as_u64().unwrap());
                    }
                    ids
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(acked.len(), 200);
    server.kill();

    let server = Server::start(&config);
    let (_, log) = get(
        &server,
        "/v1/shops/tea-oil/decisions?limit=1000",
        Some(ADMIN),
    );
    let logged: BTreeSet<u64> = log["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    let lost: Vec<_> = acked.difference(&logged).collect();
    assert!(
        lost.is_empty(),
        "acknowledged decisions lost after kill -9: {lost:?}"
    );
    let (_, refunds) = get(&server, "/v1/shops/tea-oil/refunds?limit=1000", Some(ADMIN));
    assert_eq!(
        refunds["refunds"].as_array().unwrap().len(),
        100,
        "every acknowledged refund is kept"
    );
}

/// kill -9 in the middle of steady load on three steps while the refund
/// plugin is being swapped through the API: after a restart every
/// acknowledged decision, refund record and revisit is there, and the
/// active refund version is the last acknowledged deploy (or the one in
/// flight at the kill, never an older one).
#[test]
fn kill_9_during_load_and_swaps_loses_nothing_acknowledged() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &example("shops"), "");
    let server = Server::start(&config);
    let read = |p: &str| std::fs::read(example(p)).unwrap();
    let calls = [
        (
            "refund-decision",
            read("requests/refund-policy/unshipped.json"),
        ),
        ("greeting", read("requests/greeting/first-visit.json")),
        (
            "revisit-plan",
            read("requests/revisit-planner/delivered.json"),
        ),
    ];
    let acked: Mutex<Vec<(&str, u64)>> = Mutex::new(Vec::new());
    let answered = AtomicUsize::new(0);
    let last_deploy = AtomicU64::new(0);
    let base = server.base.clone();
    let base = base.as_str();
    std::thread::scope(|scope| {
        for w in 0..4 {
            let (calls, acked, answered) = (&calls, &acked, &answered);
            scope.spawn(move || {
                // Until the kill ends it.
                for i in 0.. {
                    let (step, body) = &calls[(i + w) % calls.len()];
                    let url = format!("{base}/v1/shops/tea-oil/{step}");
                    // After the kill: connection refused or reset.
                    let Some((200, out)) = try_post(&url, Some(TEA_KEY), "application/json", body)
                    else {
                        return;
                    };
                    let id = out["decision_id"].as_u64().unwrap();
                    acked.lock().unwrap().push((step, id));
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        {
            let last_deploy = &last_deploy;
            scope.spawn(move || {
                for i in 0.. {
                    let file = if i % 2 == 0 {
                        support::wasm::HOSTILE
                    } else {
                        support::wasm::REFUND_POLICY
                    };
                    let bytes = std::fs::read(file).unwrap();
                    let url = format!("{base}/v1/shops/tea-oil/steps/refund-policy/versions");
                    let Some((201, out)) =
                        try_post(&url, Some(ADMIN), "application/octet-stream", &bytes)
                    else {
                        return;
                    };
                    let version = out["version"]["version"].as_u64().unwrap();
                    last_deploy.store(version, Ordering::Relaxed);
                }
            });
        }
        // Kill while every writer and the deployer are mid-stream, once at
        // least one deploy was acknowledged (a deploy compiles: it takes
        // longer than a few answers).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while (answered.load(Ordering::Relaxed) < 120 || last_deploy.load(Ordering::Relaxed) == 0)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        server.kill();
    });
    let acked = acked.into_inner().unwrap();
    let last_deploy = last_deploy.load(Ordering::Relaxed);
    assert!(
        last_deploy > 0,
        "no deploy was acknowledged before the kill"
    );
    eprintln!(
        "{} answers and deploys up to version {last_deploy} acknowledged before kill -9",
        acked.len()
    );

    let server = Server::start(&config);
    let ids = |path: &str, key: &str| -> BTreeSet<u64> {
        let (status, out) = get(&server, path, Some(ADMIN));
        assert_eq!(status, 200, "{out}");
        out[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r[if key == "decisions" {
                    "id"
                } else {
                    "decision_id"
                }]
                .as_u64()
                .unwrap()
            })
            .collect()
    };
    let decisions = ids("/v1/shops/tea-oil/decisions?limit=1000", "decisions");
    let refunds = ids("/v1/shops/tea-oil/refunds?limit=1000", "refunds");
    let revisits = ids("/v1/shops/tea-oil/revisits?limit=1000", "revisits");
    for (step, id) in &acked {
        assert!(decisions.contains(id), "decision {id} ({step}) lost");
        match *step {
            "refund-decision" => assert!(refunds.contains(id), "refund of decision {id} lost"),
            "revisit-plan" => assert!(revisits.contains(id), "revisits of decision {id} lost"),
            _ => {}
        }
    }
    let (_, versions) = get(
        &server,
        "/v1/shops/tea-oil/steps/refund-policy/versions",
        Some(ADMIN),
    );
    let active = versions["active"].as_u64();
    assert!(
        active == Some(last_deploy) || active == Some(last_deploy + 1),
        "active refund version {active:?} after kill -9; last acknowledged {last_deploy}: {versions}"
    );
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

/// A size-limited tmpfs mounted at a directory while it lives (the test
/// machines run tests as root; without root this test cannot make a
/// real full disk and says so).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(at: &std::path::Path, mib: u32) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(at.to_path_buf())
    }

    fn grow(&self, mib: u32) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot grow the tmpfs");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// #30: with the data dir on a small real filesystem that fills up, no
/// request waits past the durability deadline, once storage fails every
/// shop's step request is refused fast with 503 `storage_error`, reads
/// still answer and `/readyz` answers 503 naming the reason; once space is
/// freed, writes resume without a restart; and nothing acknowledged is
/// lost, before or after a kill -9 and restart.
///
/// The reserve here is a quarter of the 16 MB disk (`disk_reserve_mib =
/// 4`): the default, a tenth, is 1.6 MB there, less than sled may write
/// in one burst (it was overrun in 1 of ~25 runs, and then reads failed
/// too — what the test below covers).
#[test]
fn a_full_disk_answers_fast_503s_and_readiness_tells_the_truth() {
    fill_free_and_resume(4);
}

/// #30: the same with no reserve of free space (`disk_reserve_mib = 0`):
/// sled itself meets "no space left on device" and cannot go on after it;
/// once space is freed kefu opens the store again — in process, or, when
/// sled's own threads keep the failed store (they do here: a blob's write
/// failed), by restarting itself in place — and writes resume by
/// themselves, nothing acknowledged lost.
#[test]
fn after_sled_itself_failed_for_space_writes_resume_once_space_is_freed() {
    fill_free_and_resume(0);
}

fn fill_free_and_resume(reserve_mib: u32) {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    // Two shops on the bundled plugins (nothing big to keep on the disk).
    let shops = dir.path().join("shops");
    for (shop, var) in [
        ("tea-oil", "KEFU_KEY_TEA_OIL"),
        ("apparel", "KEFU_KEY_APPAREL"),
    ] {
        std::fs::create_dir_all(shops.join(shop)).unwrap();
        std::fs::write(
            shops.join(shop).join("shop.toml"),
            format!("name = \"{shop}\"\napi_key_env = \"{var}\"\n"),
        )
        .unwrap();
    }
    let reserve = format!("disk_reserve_mib = {reserve_mib}\n");
    let config = write_config(
        dir.path(),
        &shops,
        &format!("{reserve}[quotas]\nlog_kib_per_window = 100000000\n"),
    );
    let disk = SmallDisk::mount(&dir.path().join("data"), 16);
    let server = Server::start(&config);
    let mut big: serde_json::Value =
        serde_json::from_slice(&std::fs::read(example("requests/greeting/discount.json")).unwrap())
            .unwrap();
    // With the reserve, messages of 8 KB; without, of 16 KB: sled keeps
    // values that big in blob files of their own, and a blob's failed
    // write leaves its store unable to close (see `durability.rs`).
    let chars = if reserve_mib == 0 { 5_400 } else { 2_700 };
    big["message"] = serde_json::json!("茶".repeat(chars));
    let big = big.to_string();

    // Fill the disk: every answer comes within the deadline, 200 or 503.
    let mut acked = BTreeSet::new();
    let mut slowest = Duration::ZERO;
    let mut refused = None;
    for _ in 0..20_000 {
        let started = Instant::now();
        let (status, out) = post(&server, "/v1/shops/tea-oil/greeting", Some(TEA_KEY), &big);
        slowest = slowest.max(started.elapsed());
        match status {
            200 => {
                acked.insert(out["decision_id"].as_u64().unwrap());
            }
            503 => {
                refused = Some(out);
                break;
            }
            other => panic!("{other}: {out}"),
        }
    }
    let refused = refused.expect("the disk never filled");
    eprintln!(
        "{} decisions acknowledged before the disk filled; slowest answer {slowest:?}: {refused}",
        acked.len()
    );
    assert_eq!(refused["error"]["code"], "storage_error", "{refused}");
    assert!(
        slowest < Duration::from_secs(7),
        "a request waited {slowest:?}"
    );
    assert!(!acked.is_empty());

    // Failing now: every shop's step request is refused fast, readiness
    // says why, and (with the reserve) reads answer.
    let small = std::fs::read(example("requests/greeting/first-visit.json")).unwrap();
    for (shop, key) in [
        ("tea-oil", TEA_KEY),
        ("apparel", support::server::APPAREL_KEY),
    ] {
        let started = Instant::now();
        let (status, out) = post(
            &server,
            &format!("/v1/shops/{shop}/greeting"),
            Some(key),
            &small,
        );
        assert_eq!(
            (status, out["error"]["code"].as_str()),
            (503, Some("storage_error")),
            "{out}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{shop}: {:?}",
            started.elapsed()
        );
    }
    if reserve_mib != 0 {
        let (status, log) = get(
            &server,
            "/v1/shops/tea-oil/decisions?limit=5",
            Some(TEA_KEY),
        );
        assert_eq!(status, 200, "{log}");
    }
    let ready = agent().get(server.url("/readyz")).call().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let text = ready.into_body().read_to_string().unwrap();
    assert!(text.contains("storage failing"), "{text}");
    let metrics = support::server::metrics(&server);
    assert!(
        metrics.contains("kefu_storage_errors_total"),
        "no storage error counted"
    );

    // Room again: writes resume by themselves, within seconds, and every
    // acknowledged decision reads back.
    disk.grow(300);
    let freed = Instant::now();
    let resumed = loop {
        // A restart in place (when sled's threads keep the failed store)
        // closes the connections open then: a request may fail once.
        let answer = support::server::try_post(
            &server.url("/v1/shops/apparel/greeting"),
            Some(support::server::APPAREL_KEY),
            "application/json",
            &small,
        );
        if let Some((200, _)) = answer {
            break freed.elapsed();
        }
        if let Some((_, out)) = &answer {
            let code = out["error"]["code"].as_str();
            assert!(matches!(code, Some("storage_error" | "starting")), "{out}");
        }
        assert!(
            freed.elapsed() < Duration::from_secs(20),
            "writes did not resume within 20 s of freeing space: {answer:?}; log: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("writes resumed {resumed:?} after space was freed");
    let ready = agent().get(server.url("/readyz")).call().unwrap();
    assert_eq!(ready.status().as_u16(), 200, "ready again");
    // Every answered greeting of tea-oil, a page of 200 at a time (more
    // than a thousand fit on the disk; a page of 16 KB entries stays
    // under the client's 10 MB).
    let logged = |server: &Server| -> BTreeSet<u64> {
        let mut ids = BTreeSet::new();
        let mut until = String::new();
        loop {
            let (status, log) = get(
                server,
                &format!("/v1/shops/tea-oil/decisions?step=greeting&limit=200{until}"),
                Some(TEA_KEY),
            );
            assert_eq!(status, 200, "{log}");
            let page = log["decisions"].as_array().unwrap();
            let before = ids.len();
            ids.extend(
                page.iter()
                    .filter(|d| d["error"].is_null())
                    .map(|d| d["id"].as_u64().unwrap()),
            );
            let Some(oldest) = page.iter().filter_map(|d| d["at_ms"].as_i64()).min() else {
                return ids;
            };
            if ids.len() == before {
                return ids;
            }
            // Until is exclusive: the oldest time again, deduplicated.
            until = format!("&until={}", oldest + 1);
        }
    };
    let lost: Vec<u64> = acked.difference(&logged(&server)).copied().collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost before a restart: {lost:?}"
    );

    // A kill -9 and a restart: every acknowledged decision is there, and
    // writes work.
    server.kill();
    let server = Server::start(&config);
    let lost: Vec<u64> = acked.difference(&logged(&server)).copied().collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    let (status, out) = post(&server, "/v1/shops/tea-oil/greeting", Some(TEA_KEY), &small);
    assert_eq!(status, 200, "{out}");
    drop(server);
}
