//! The console as a person uses it, in a real browser: the real `kefu
//! serve` over the example shops, and tests/browser/console.mjs driving
//! the system's headless Chromium through playwright-core — sign in, open
//! a shop, upload a new version and see it answer, roll back, search a
//! buyer's decision, record a revisit outcome and see the report change,
//! switch to English, and fail to open another shop with one shop's key;
//! at 1280×800 and at phone width, with no page wider than the window
//! and none over 100 KB. Screenshots of every page go to
//! `<target>/console-screenshots/`. tests/run.sh installs Chromium and
//! playwright-core (`kefu_setup_browser` in plugins/setup.sh).

mod support;

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use support::server::{ADMIN, APPAREL_KEY, Server, TEA_KEY, post, write_config};

fn tool(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: run `source plugins/setup.sh && kefu_setup_browser` (tests/run.sh does)",
        path.display()
    );
    path
}

#[test]
fn the_console_works_in_a_real_browser() {
    let chromium = tool("KEFU_CHROMIUM", "/usr/bin/chromium");
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    tool(
        "KEFU_PLAYWRIGHT",
        &browser_dir
            .join("node_modules/playwright-core")
            .display()
            .to_string(),
    );

    let dir = tempfile::tempdir().unwrap();
    let shops = support::shops::examples_and_crm(dir.path());
    let server = Server::start(&write_config(dir.path(), &shops, ""));
    let _ = APPAREL_KEY;

    // A buyer with decisions, and a revisit due for the crm shop.
    let request: Value = serde_json::from_slice(
        &std::fs::read(support::example("requests/refund-policy/no-reason.json")).unwrap(),
    )
    .unwrap();
    let customer = request["customer"]["id"].as_str().unwrap().to_string();
    let (status, answer) = post(
        &server,
        "/v1/shops/tea-oil/refund-decision",
        Some(TEA_KEY),
        request.to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    let mut plan: Value = serde_json::from_slice(
        &std::fs::read(support::example("requests/revisit-planner/unpaid.json")).unwrap(),
    )
    .unwrap();
    plan["trigger"]["Unpaid"]["created_at"] = json!(chrono::Utc::now().timestamp() - 60);
    // One for each screen size the browser works through.
    for buyer in ["buyer-desktop", "buyer-phone"] {
        plan["customer"]["id"] = json!(buyer);
        let (status, answer) = post(
            &server,
            "/v1/shops/crm/revisit-plan",
            Some("test-key-lab"),
            plan.to_string(),
        );
        assert_eq!(status, 200, "{answer}");
    }

    // A refund-policy component of its own digest to deploy.
    let component = dir.path().join("refund-policy.wasm");
    std::fs::write(
        &component,
        support::unique(std::fs::read(support::default_plugin("refund-policy")).unwrap()),
    )
    .unwrap();
    let request_file = dir.path().join("refund.json");
    std::fs::write(&request_file, request.to_string()).unwrap();

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    let status = std::process::Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .current_dir(&browser_dir)
        .env("KEFU_URL", &server.base)
        .env("KEFU_ADMIN", ADMIN)
        .env("KEFU_TEA_KEY", TEA_KEY)
        .env("KEFU_COMPONENT", &component)
        .env("KEFU_REFUND_REQUEST", &request_file)
        .env("KEFU_CUSTOMER", &customer)
        .env("KEFU_SHOTS", &shots)
        .env("KEFU_CHROMIUM", &chromium)
        .status()
        .expect("node runs");
    assert!(
        status.success(),
        "the browser test failed (see above); screenshots so far in {}; server log: {}",
        shots.display(),
        std::fs::read_to_string(&server.log).unwrap_or_default()
    );
}
