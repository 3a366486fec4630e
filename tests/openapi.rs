//! The OpenAPI description: served, generated from the code, and fuzzed
//! (schemathesis, bounded, all its checks) against a real server: no
//! server error, and every answer's status, content type and body as the
//! description says.

mod support;

use support::server::{Server, write_config};

#[test]
fn the_openapi_description_is_served_and_the_server_answers_as_it_says() {
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
        "/v1/shops/{shop}/events",
        "/v1/shops/{shop}/orders/{order}/timeline",
        "/v1/shops/{shop}/actions",
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
    // Every check, everywhere, but "schema-valid data is accepted" on two
    // operations whose rule no schema can say: the report takes `period`
    // (and `at`) or `from` and `to` with from < to, so mixes of both are
    // refused (400); a deploy's bytes must be a component of the step's
    // world, so random bytes are refused (422); a canary needs a recorded
    // version (404) and promote one running (404); a replay a recorded
    // version or a component (404, 422), and its reads a replay started;
    // an event's `data` is the record its `type` names (any other object
    // is refused, 400).
    let config = dir.path().join("schemathesis.toml");
    let mut toml = String::new();
    for path in [
        "/v1/shops/{shop}/revisits/report",
        "/v1/shops/{shop}/steps/{step}/versions",
        "/v1/shops/{shop}/steps/{step}/canary",
        "/v1/shops/{shop}/steps/{step}/canary/promote",
        "/v1/shops/{shop}/steps/{step}/replays",
        "/v1/shops/{shop}/steps/{step}/replays/{id}",
        "/v1/shops/{shop}/steps/{step}/replays/{id}/examples/{decision}",
        "/v1/shops/{shop}/steps/{step}/shadow",
        "/v1/shops/{shop}/steps/{step}/shadow/examples/{decision}",
        "/v1/shops/{shop}/events",
    ] {
        toml += &format!(
            "[[operations]]\ninclude-path = \"{path}\"\nchecks.positive_data_acceptance.enabled = false\n\n"
        );
    }
    std::fs::write(&config, toml).unwrap();
    for (auth, filter) in runs {
        let mut child = std::process::Command::new(&tool)
            .arg("--config-file")
            .arg(&config)
            // schemathesis keeps a cache in its working directory.
            .current_dir(dir.path())
            .args(["run", &s.url("/v1/openapi.json"), "-H", auth])
            .args(filter)
            // No `--checks`: schemathesis 4 runs every check by default,
            // and a `--checks` list would override the config above.
            .args(["-n", "25", "--request-timeout", "10", "--seed", "7"])
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
