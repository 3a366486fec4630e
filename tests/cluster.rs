//! Three `kefu serve` nodes on one NATS JetStream (a real `nats-server`,
//! loopback): a deploy through one node serves from the others, what one
//! node records the others read, revisits fire once while the node
//! firing them is killed with kill -9, and NATS itself restarted under
//! load loses no acknowledged decision while readiness reports the
//! outage.

mod support;

use kefu_tests::nats::Nats;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::hook::Receiver;
use support::server::{
    ADMIN, Server, agent, deploy_file, get, metrics, post, roll_back, write_config,
};
use support::shops::unpaid;
use support::{example, wasm};

const KEY: &str = "test-key-lab";

/// Node `i`'s config: its own data dir and copy of the shops, the shared
/// NATS.
fn node_config(dir: &Path, i: usize, nats: &Nats, shop: &dyn Fn(&Path)) -> PathBuf {
    let home = dir.join(format!("node-{i}"));
    let shops = home.join("shops");
    std::fs::create_dir_all(&shops).unwrap();
    shop(&shops);
    write_config(
        &home,
        &shops,
        &format!(
            "[storage]\nbackend = \"nats\"\nurl = \"{}\"\nnode = \"node-{i}\"\n",
            nats.url()
        ),
    )
}

/// Start three nodes one after the other (the first records each shop's
/// versions; the others find them).
fn three_nodes(dir: &Path, nats: &Nats, shop: &dyn Fn(&Path)) -> Vec<Server> {
    (0..3)
        .map(|i| Server::start(&node_config(dir, i, nats, shop)))
        .collect()
}

fn swap_shop(shops: &Path) {
    let shop = shops.join("swap");
    std::fs::create_dir_all(&shop).unwrap();
    std::fs::copy(wasm::REFUND_POLICY, shop.join("refund.wasm")).unwrap();
    std::fs::write(
        shop.join("shop.toml"),
        "name = \"swap\"\napi_key_env = \"KEFU_KEY_LAB\"\n\n[steps.refund-policy]\nplugin = \"refund.wasm\"\n",
    )
    .unwrap();
}

/// The version that answers a refund call on `s`.
fn version(s: &Server) -> u64 {
    let body = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let (status, out) = post(s, "/v1/shops/swap/refund-decision", Some(KEY), body);
    assert_eq!(status, 200, "{out}");
    out["plugin"]["version"].as_u64().unwrap()
}

/// The ids of the `swap` shop's decisions as `s` lists them.
fn decision_ids(s: &Server) -> Vec<u64> {
    let (_, listed) = get(s, "/v1/shops/swap/decisions?limit=1000", Some(KEY));
    listed["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

/// How long until every node in `nodes` answers with `v`.
fn until_all_serve(nodes: &[&Server], v: u64) -> Duration {
    let start = Instant::now();
    for s in nodes {
        while version(s) != v {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{} never served version {v}",
                s.base
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    start.elapsed()
}

#[test]
fn a_deploy_through_one_node_serves_from_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let nodes = three_nodes(dir.path(), &nats, &swap_shop);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    for s in &nodes {
        assert_eq!(version(s), 1, "every node serves the folder's version");
    }
    // Deploy through A.
    let (status, out) = deploy_file(a, "swap", "refund-policy", wasm::HOSTILE);
    assert_eq!(status, 201, "{out}");
    let deployed = Instant::now();
    until_all_serve(&[a, b, c], 2);
    let took = deployed.elapsed();
    eprintln!("a deploy through node A served from B and C after {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Roll back through C: A and B follow.
    let (status, out) = roll_back(c, "swap", "refund-policy");
    assert_eq!(status, 200, "{out}");
    let took = until_all_serve(&[c, a, b], 1);
    eprintln!("a rollback through node C served from A and B after {took:?}");
    // Decisions made through A, B and C are read through any node; the
    // audit through B shows the deploy made through A and the rollback
    // made through C.
    let ids = decision_ids(b);
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids are unique across nodes");
    assert!(ids.len() >= 6, "every node's decisions: {}", ids.len());
    let (_, audit) = get(b, "/v1/audit?shop=swap", Some(ADMIN));
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"rolled-back"), "{actions:?}");
    // A canary started through A (every customer, version 3) serves from
    // B and C; aborted through B, it ends on A and C.
    let (ct, body) = kefu_tests::multipart(&[
        (
            "component",
            "refund.wasm",
            "application/wasm",
            &std::fs::read(wasm::HOSTILE).unwrap(),
        ),
        (
            "config",
            "c.json",
            "application/json",
            br#"{"behavior": "ok"}"#,
        ),
        ("canary", "canary", "text/plain", b"100"),
    ]);
    let mut resp = agent()
        .post(a.url("/v1/shops/swap/steps/refund-policy/versions"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", ct)
        .send(&body[..])
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        201,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    until_all_serve(&[a, b, c], 3);
    let mut resp = agent()
        .delete(b.url("/v1/shops/swap/steps/refund-policy/canary"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .call()
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.body_mut().read_to_string().unwrap()
    );
    let took = until_all_serve(&[b, a, c], 1);
    eprintln!("a canary aborted through node B ended on A and C after {took:?}");
    // A node started later serves what the cluster runs now.
    let late = Server::start(&node_config(dir.path(), 3, &nats, &swap_shop));
    assert_eq!(version(&late), 1);
}

fn crm_shop(webhook: String) -> impl Fn(&Path) {
    move |shops: &Path| support::shops::crm(shops, &webhook)
}

/// Which node runs the shared background work now.
fn leader(nodes: &[Server]) -> Option<usize> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let leading: Vec<usize> = (0..nodes.len())
            .filter(|&i| metrics(&nodes[i]).contains("kefu_cluster_leader 1"))
            .collect();
        if leading.len() == 1 {
            return Some(leading[0]);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn revisits_fire_once_each_while_the_node_firing_them_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("nats"));
    let (receiver, url) = Receiver::start();
    let mut nodes = three_nodes(dir.path(), &nats, &crm_shop(url));
    let now = chrono::Utc::now().timestamp();
    // 10,000 revisits, planned through the three nodes, due over 8 s
    // starting 4 s from now.
    for (n, node) in nodes.iter().enumerate() {
        let requests: Vec<Value> = (0..10_000)
            .filter(|i| i % 3 == n)
            .map(|i| unpaid(i, now + 4 + (i % 8) as i64))
            .collect();
        let count = requests.len();
        let (status, out) = post(
            node,
            "/v1/shops/crm/revisit-plans",
            Some(KEY),
            serde_json::to_vec(&json!({ "requests": requests })).unwrap(),
        );
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["planned"], count);
    }
    let first = leader(&nodes).expect("one node leads");
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.distinct() < 2_000 {
        assert!(
            Instant::now() < deadline,
            "webhooks never started: {} delivered; the nodes said:\n{}",
            receiver.distinct(),
            problems(&nodes)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let at_kill = receiver.distinct();
    let kill_at = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    let killed = nodes.remove(first);
    let config = killed.config.clone();
    killed.kill();
    let took_over = Instant::now();
    let second = leader(&nodes).expect("another node takes over");
    eprintln!(
        "node {first} killed with {at_kill} webhooks delivered; another took over after {:?}",
        took_over.elapsed()
    );
    assert_ne!(nodes[second].config, config);
    nodes.push(Server::start(&config));
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.distinct() < 10_000 {
        assert!(
            Instant::now() < deadline,
            "only {} of 10,000 revisits fired; the nodes said:\n{}",
            receiver.distinct(),
            problems(&nodes)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(1));
    let seen = receiver.seen.lock().unwrap();
    assert_eq!(seen.len(), 10_000, "each revisit fired once, by its key");
    assert!(
        seen.keys()
            .all(|k| k.starts_with("revisit-") && k.ends_with("-1")),
        "first attempts only"
    );
    let resent: u32 = seen.values().map(|v| v.0 - 1).sum();
    let early = seen.values().filter(|v| v.1 + 0.001 < v.2 as f64).count();
    assert_eq!(early, 0, "no webhook before its revisit's time");
    // Re-sent under the same key: retries (a try whose answer the sender
    // did not get is tried again; tests/revisits.rs sees as many on one
    // node), and what was in flight when the node died.
    let resent_first_before = seen.values().filter(|v| v.0 > 1 && v.1 < kill_at).count();
    eprintln!(
        "{resent} webhooks re-sent under the same key ({resent_first_before} of them first sent before the kill)"
    );
    for node in &nodes {
        let (_, planned) = get(node, "/v1/shops/crm/revisits?status=planned", Some(KEY));
        assert_eq!(planned["revisits"], json!([]), "{}", node.base);
    }
}

/// The warnings and errors the nodes logged.
fn problems(nodes: &[Server]) -> String {
    nodes
        .iter()
        .flat_map(|n| {
            std::fs::read_to_string(&n.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                .take(20)
                .map(|l| format!("{}: {l}", n.base))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ready(s: &Server) -> (u16, String) {
    match agent().get(s.url("/readyz")).call() {
        Ok(mut r) => (r.status().as_u16(), r.body_mut().read_to_string().unwrap()),
        Err(e) => (0, e.to_string()),
    }
}

#[test]
fn nats_restarted_under_load_loses_no_acknowledged_decision() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(&dir.path().join("nats"));
    let nodes = three_nodes(dir.path(), &nats, &swap_shop);
    let a = &nodes[0];
    let body = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (acked, refused, outage) = std::thread::scope(|scope| {
        let load = scope.spawn(|| {
            let (mut acked, mut refused) = (Vec::new(), 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, out) =
                    post(a, "/v1/shops/swap/refund-decision", Some(KEY), body.clone());
                match status {
                    200 => acked.push(out["decision_id"].as_u64().unwrap()),
                    _ => refused += 1,
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (acked, refused)
        });
        std::thread::sleep(Duration::from_millis(1500));
        nats.kill();
        // Readiness reports the outage while it lasts.
        let start = Instant::now();
        let outage = loop {
            let (status, text) = ready(a);
            if status == 503 {
                break text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "/readyz stayed {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(1500));
        nats.restart();
        let start = Instant::now();
        while ready(a).0 != 200 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never ready again: {:?}",
                ready(a)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (acked, refused) = load.join().unwrap();
        (acked, refused, outage)
    });
    eprintln!(
        "{} decisions acknowledged, {refused} refused during the outage; /readyz said: {}",
        acked.len(),
        outage.trim()
    );
    assert!(outage.contains("NATS"), "{outage}");
    assert!(acked.len() > 20 && acked.len() < 1000);
    // Every acknowledged decision is in the log, on every node.
    for node in &nodes {
        let kept: std::collections::HashSet<u64> = decision_ids(node).into_iter().collect();
        let lost: Vec<&u64> = acked.iter().filter(|id| !kept.contains(id)).collect();
        assert!(
            lost.is_empty(),
            "{} lost {} acknowledged decisions",
            node.base,
            lost.len()
        );
    }
}

#[test]
fn a_single_node_migrates_into_nats_and_a_cluster_serves_its_history() {
    let dir = tempfile::tempdir().unwrap();
    // One node on sled, with a deploy and decisions.
    let home = dir.path().join("single");
    let shops = home.join("shops");
    swap_shop(&shops);
    let single = Server::start(&write_config(&home, &shops, ""));
    let (status, out) = deploy_file(&single, "swap", "refund-policy", wasm::HOSTILE);
    assert_eq!(status, 201, "{out}");
    let body = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let (_, answer) = post(&single, "/v1/shops/swap/refund-decision", Some(KEY), body);
    let decided = answer["decision_id"].as_u64().unwrap();
    single.kill();

    let nats = Nats::start(&dir.path().join("nats"));
    let migrate = |from: &str| {
        support::kefu()
            .args(["migrate", "--from", from, "--to", &nats.url()])
            .output()
            .unwrap()
    };
    let bad = migrate("data");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected sled:DIR"));
    let out = migrate(&format!("sled:{}", home.join("data").display()));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.starts_with("copied ") && said.contains("decisions"),
        "{said}"
    );
    // Into a prefix that holds data already: refused, saying why.
    let again = migrate(&format!("sled:{}", home.join("data").display()));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    // Nodes on NATS serve the migrated version and read the history.
    let nodes = three_nodes(dir.path(), &nats, &swap_shop);
    for s in &nodes {
        assert_eq!(version(s), 2, "the version deployed before the move");
    }
    assert!(
        decision_ids(&nodes[2]).contains(&decided),
        "the decision made before the move"
    );
}

#[test]
fn a_node_that_cannot_reach_nats_or_is_misconfigured_says_so_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let shops = dir.path().join("shops");
    swap_shop(&shops);
    // Nothing listens on port 1.
    let cases = [
        (
            "[storage]\nbackend = \"nats\"\nurl = \"nats://127.0.0.1:1\"\n",
            "cannot open the NATS store at nats://127.0.0.1:1",
        ),
        (
            "[storage]\nbackend = \"nats\"\nprefix = \"a.b\"\n",
            "prefix `a.b`",
        ),
        ("[storage]\nbackend = \"natz\"\n", "unknown variant `natz`"),
    ];
    for (extra, says) in cases {
        let config = write_config(dir.path(), &shops, extra);
        let out = support::kefu()
            .args(["serve", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra}: started");
        assert!(err.contains(says), "{extra}: said {err}");
        assert!(!err.contains("panicked"), "{extra}: {err}");
    }
}
