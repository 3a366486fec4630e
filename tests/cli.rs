//! The `kefu` command's own behaviour: `check`, and `run`'s errors.

mod support;

use support::{Run, example, kefu, run_raw, wasm};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn check_names_the_world_of_each_default_plugin() {
    for (file, world) in [
        (wasm::GREETING, "greeting"),
        (wasm::ORDER_CONFIRMATION, "order-confirmation"),
        (wasm::REFUND_POLICY, "refund-policy"),
        (wasm::REVISIT_PLANNER, "revisit-planner"),
    ] {
        let out = kefu().args(["check", file]).output().unwrap();
        assert!(out.status.success());
        assert!(
            stdout(&out).contains(&format!("implements world `{world}`")),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn check_explains_why_a_component_implements_no_world() {
    let out = kefu()
        .args(["check", wasm::WRONG_SIGNATURE])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains("implements no kefu step world"), "{text}");
    assert!(
        text.contains("world `refund-policy`: export `decide` has the wrong type"),
        "{text}"
    );
    assert!(
        text.contains("world `greeting`: missing export `greet` (it exports: decide)"),
        "{text}"
    );

    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.wasm");
    std::fs::write(&notes, "just text").unwrap();
    let out = kefu().arg("check").arg(&notes).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("not a WebAssembly file"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn run_reports_duration_and_memory() {
    let out = run_raw(
        "greeting",
        &example("requests/greeting/first-visit.json"),
        Run {
            now: "1795140000",
            ..Run::default()
        },
    );
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["duration_us"].as_u64().unwrap() > 0);
    assert!(report["memory_bytes"].as_u64().unwrap() >= 65536);
    assert_eq!(report["now"], 1795140000);
    assert_eq!(report["digest"].as_str().unwrap().len(), 64);
}

#[test]
fn run_with_malformed_input_names_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"customer":{"id":"x","nickname":"n","member_level":null,"order_count":"many","returning":false},"message":"","agent_name":null}"#,
    )
    .unwrap();
    let out = run_raw(
        "greeting",
        &bad,
        Run {
            now: "0",
            ..Run::default()
        },
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("customer.order_count"), "{err}");

    std::fs::write(&bad, "{ not json").unwrap();
    let out = run_raw(
        "greeting",
        &bad,
        Run {
            now: "0",
            ..Run::default()
        },
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid greeting input"));
}

#[test]
fn run_with_the_wrong_plugin_names_the_world() {
    let out = run_raw(
        "greeting",
        &example("requests/greeting/first-visit.json"),
        Run {
            now: "0",
            plugin: Some(wasm::REFUND_POLICY),
            ..Run::default()
        },
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not implement world `greeting`: missing export `greet`"),
        "{err}"
    );
}

#[test]
fn run_with_a_bad_config_gets_a_plugin_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("refund.toml");
    std::fs::write(&cfg, "no_reason_return_days = \"seven\"\n").unwrap();
    let out = kefu()
        .args([
            "run",
            "--step",
            "refund-policy",
            "--plugin",
            wasm::REFUND_POLICY,
            "--input",
        ])
        .arg(example("requests/refund-policy/no-reason.json"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["error"]["code"], "plugin_error");
    assert!(
        report["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid plugin config"),
        "{report}"
    );
}
