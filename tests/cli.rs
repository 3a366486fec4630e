//! The `kefu` command's own behaviour: `check`, and `run`'s errors.

mod support;

use support::{Run, example, kefu, run_raw, wasm};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// #28 item 3: `kefu --version` names the commit it was built from and
/// that commit's date.
#[test]
fn version_names_the_commit_and_its_date() {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let out = kefu().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = stdout(&out);
    let want = format!(
        "kefu {} (commit {}, {})",
        env!("CARGO_PKG_VERSION"),
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cs"])
    );
    assert_eq!(text.trim(), want);
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
    // `kefu run` of the greeting on `input`: it fails (exit 2); stderr.
    let refused = |input: &str| {
        std::fs::write(&bad, input).unwrap();
        let out = run_raw(
            "greeting",
            &bad,
            Run {
                now: "0",
                ..Run::default()
            },
        );
        assert_eq!(out.status.code(), Some(2));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(
        r#"{"customer":{"id":"x","nickname":"n","member_level":null,"order_count":"many","returning":false},"message":"","agent_name":null}"#,
    );
    assert!(err.contains("customer.order_count"), "{err}");
    let err = refused("{ not json");
    assert!(err.contains("bad.json is not JSON: "), "{err}");
    // A missing field is named by its own path, not its parent's.
    let err = refused(
        r#"{"customer":{"id":"x","member_level":null,"order_count":1,"returning":false},"message":"","agent_name":null}"#,
    );
    assert!(
        err.contains(
            "not a valid greeting input: field `customer.nickname`: missing field `nickname`"
        ),
        "{err}"
    );
    let err = refused(
        r#"{"customer":{"id":"x","nickname":"n","member_level":null,"order_count":1,"returning":false},"agent_name":null}"#,
    );
    assert!(
        err.contains("field `message`: missing field `message`"),
        "{err}"
    );
}

/// #28 item 9: `kefu run --step` takes the API's step names too, and
/// without `--step` reads the step from the plugin's world.
#[test]
fn run_takes_api_step_names_and_infers_the_step_from_the_plugin() {
    let input = example("requests/refund-policy/no-reason.json");
    // `kefu run ARGS --now ... --input ...`: its JSON report.
    let report = |args: &[&str]| -> serde_json::Value {
        let out = kefu()
            .arg("run")
            .args(args)
            .args(["--now", "1795140000", "--input"])
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let a = report(&["--step", "refund-decision"]);
    let b = report(&["--plugin", wasm::REFUND_POLICY]);
    assert_eq!(a["step"], "refund-policy");
    assert_eq!((&a["output"], &b["step"]), (&b["output"], &a["step"]));

    let unknown = kefu()
        .args(["run", "--step", "refunds", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("unknown step `refunds`") && err.contains("refund-policy (refund-decision)"),
        "{err}"
    );
    let neither = kefu()
        .args(["run", "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&neither.stderr).contains("--step STEP, or --plugin"),
        "{}",
        String::from_utf8_lossy(&neither.stderr)
    );
}

/// #28 item 9: `kefu completions SHELL` prints a completion script that
/// knows the subcommands.
#[test]
fn completions_for_bash_zsh_and_fish_know_the_subcommands() {
    for (shell, marker) in [
        ("bash", "_kefu()"),
        ("zsh", "#compdef kefu"),
        ("fish", "complete -c kefu"),
    ] {
        let out = kefu().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(text.contains(marker), "{shell}: {text}");
        for verb in ["serve", "deploy", "simulate", "rollback"] {
            assert!(text.contains(verb), "{shell} lacks {verb}");
        }
    }
    let bad = kefu().args(["completions", "tcsh"]).output().unwrap();
    assert!(!bad.status.success());
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

/// `kefu VERB ARGS...` against `server` with `env`; (exit code, stdout,
/// stderr).
fn verb(server: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = kefu();
    cmd.args(args)
        .arg("--server")
        .arg(server)
        .env_remove("KEFU_KEY")
        .env_remove("KEFU_ADMIN_TOKEN")
        .env_remove("KEFU_SERVER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// #32: the operator verbs against a real `kefu serve`: deploy with a
/// config, versions, rollback, decisions by customer, revisits, the
/// audit, and every error path with its exit code (2 usage, 3 refused,
/// 4 unreachable).
#[test]
fn operator_verbs_drive_a_running_server() {
    use support::server::{ADMIN, Server, TEA_KEY, post, write_config};
    let dir = tempfile::tempdir().unwrap();
    let shops = support::shops::lab(dir.path());
    let s = Server::start(&write_config(dir.path(), &shops, ""));
    let url = s.url("");
    let url = url.trim_end_matches('/');
    let admin = [("KEFU_ADMIN_TOKEN", ADMIN)];
    let config = dir.path().join("refund.toml");
    std::fs::write(&config, "no_reason_return_days = 10\n").unwrap();
    let step = ["--shop", "tea-oil", "--step", "refund-policy"];

    let (code, out, err) = verb(
        url,
        &[
            &["deploy"][..],
            &step,
            &[wasm::REFUND_POLICY, "--config", config.to_str().unwrap()],
        ]
        .concat(),
        &admin,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("version 2 active") && out.contains("took"),
        "{out}"
    );

    let (code, out, err) = verb(url, &[&["versions"][..], &step].concat(), &admin);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("version  status"), "{out}");
    assert!(out.contains("no_reason_return_days"), "{out}");

    let (code, out, err) = verb(
        url,
        &[&["rollback"][..], &step, &["--to", "1"]].concat(),
        &admin,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("version 1 active again"), "{out}");

    // A decision about a customer, found by customer.
    let body = std::fs::read(example("requests/refund-policy/unshipped.json")).unwrap();
    let customer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let customer = customer["customer"]["id"].as_str().unwrap().to_string();
    let (status, answer) = post(&s, "/v1/shops/tea-oil/refund-decision", Some(TEA_KEY), body);
    assert_eq!(status, 200, "{answer}");
    let id = answer["decision_id"].to_string();
    let key = [("KEFU_KEY", TEA_KEY)];
    let (code, out, err) = verb(
        url,
        &["decisions", "--shop", "tea-oil", "--customer", &customer],
        &key,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().any(|l| l.starts_with(&id)), "{out}");
    let (_, out, _) = verb(
        url,
        &["decisions", "--shop", "tea-oil", "--customer", "nobody"],
        &key,
    );
    assert_eq!(out.lines().count(), 1, "only the header: {out}");
    let (code, out, _) = verb(
        url,
        &["revisits", "--shop", "tea-oil", "--status", "due"],
        &key,
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("id  due"), "{out}");
    let (code, out, _) = verb(url, &["audit", "--shop", "tea-oil", "--json"], &admin);
    assert_eq!(code, 0);
    let audit: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(audit["events"][0]["action"], "rolled-back", "{audit}");

    // A canary: deployed to 20% of customers, shown, raised, aborted.
    let (code, out, err) = verb(
        url,
        &[
            &["deploy"][..],
            &step,
            &["--config", config.to_str().unwrap(), "--canary", "20"],
        ]
        .concat(),
        &admin,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("serving 20% of customers as a canary"),
        "{out}"
    );
    let canary = [&["canary"][..], &step].concat();
    let (code, out, err) = verb(url, &canary, &admin);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("to 20% of customers (stable: version 1)"),
        "{out}"
    );
    assert!(
        out.contains("analysis: wait") && out.contains("side"),
        "{out}"
    );
    let (code, out, err) = verb(url, &[&canary[..], &["--percent", "40"]].concat(), &admin);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("to 40% of customers"), "{out}");
    let (code, out, err) = verb(
        url,
        &[&canary[..], &["--abort", "--reason", "not today"]].concat(),
        &admin,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("aborted"), "{out}");
    let (code, _, err) = verb(url, &[&canary[..], &["--promote"]].concat(), &admin);
    assert_eq!(code, 3, "no canary to promote: {err}");
    assert!(err.contains("no canary running"), "{err}");

    // Refused: a wrong key, an unknown shop, a component that is not one.
    let (code, _, err) = verb(
        url,
        &["decisions", "--shop", "tea-oil"],
        &[("KEFU_KEY", "wrong")],
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("403 forbidden"), "{err}");
    let (code, _, err) = verb(
        url,
        &["versions", "--shop", "nope", "--step", "greeting"],
        &admin,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("unknown_shop"), "{err}");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").unwrap();
    let (code, _, err) = verb(
        url,
        &[&["deploy"][..], &step, &[junk.to_str().unwrap()]].concat(),
        &admin,
    );
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("plugin_rejected"), "{err}");
    // Bad usage: no credential, a missing file, no --shop.
    let (code, _, err) = verb(url, &[&["versions"][..], &step].concat(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("admin token"), "{err}");
    let (code, _, err) = verb(
        url,
        &[&["deploy"][..], &step, &["/no/such.wasm"]].concat(),
        &admin,
    );
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = verb(url, &["versions", "--step", "greeting"], &admin);
    assert_eq!(code, 2);
    // Unreachable.
    let (code, _, err) = verb(
        "http://127.0.0.1:1",
        &[&["versions"][..], &step].concat(),
        &admin,
    );
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("cannot reach the server"), "{err}");
    // The token is never printed.
    let (_, out, err) = verb(url, &[&["versions"][..], &step].concat(), &admin);
    assert!(!out.contains(ADMIN) && !err.contains(ADMIN));
}

/// #28 item 10: README.zh-CN.md keeps in step with the README: every
/// endpoint of the README's API table, and every command of its
/// quickstart and plugin sections, is in the Chinese one too.
#[test]
fn the_chinese_readme_keeps_in_step_with_the_readme() {
    let read = |name: &str| std::fs::read_to_string(support::root().join(name)).unwrap();
    let (en, zh) = (read("README.md"), read("README.zh-CN.md"));
    let section = |text: &str, heading: &str| -> String {
        let start = text.find(heading).unwrap_or_else(|| panic!("no {heading}"));
        let rest = &text[start + heading.len()..];
        rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
    };
    let endpoints: Vec<String> = section(&en, "## HTTP API")
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split(" | ").next().unwrap().to_string())
        .filter(|cell| cell.contains("/v1/") || cell.contains("/healthz"))
        .collect();
    assert!(endpoints.len() >= 20, "{endpoints:?}");
    let zh_api = section(&zh, "## HTTP API");
    for endpoint in &endpoints {
        assert!(
            zh_api
                .lines()
                .any(|l| l.starts_with(&format!("{endpoint} | "))),
            "README.zh-CN.md lacks the endpoint {endpoint}"
        );
    }
    let mut commands = 0;
    for heading in ["## Quickstart", "## Writing a plugin"] {
        for line in section(&en, heading).lines() {
            let line = line.trim_end();
            if ["bash ", "cargo ", "kefu "]
                .iter()
                .any(|c| line.starts_with(c))
            {
                assert!(zh.contains(line), "README.zh-CN.md lacks `{line}`");
                commands += 1;
            }
        }
    }
    assert!(commands >= 7, "{commands} commands");
}

/// #31: a compile worker (`kefu __compile LIMITS FUNCTIONS OUT`, started
/// by `kefu serve`) writes the artifact to the file it is given, whole,
/// keeps the component's functions in the folder it is given, and says on
/// stderr how many came from there: a second compile takes nearly all
/// from it. An invalid component is refused with exit code 1 and the reason.
#[test]
fn a_compile_worker_writes_its_artifact_and_keeps_its_functions() {
    let dir = tempfile::tempdir().unwrap();
    let functions = dir.path().join("functions");
    let compile = |out: &std::path::Path, input: &[u8]| {
        use std::io::Write;
        let mut child = kefu()
            .args(["__compile", "{}"])
            .arg(&functions)
            .arg(out)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    let counts = |out: &std::process::Output| -> (u64, u64) {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut n = err
            .strip_prefix("kefu-functions ")
            .unwrap_or_else(|| panic!("no counts: {err}"))
            .split(' ')
            .map(|n| n.trim().parse().unwrap());
        (n.next().unwrap(), n.next().unwrap())
    };
    let bytes = std::fs::read(wasm::GREETING).unwrap();
    let first = dir.path().join("first.cwasm");
    let out = compile(&first, &bytes);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.is_empty(),
        "the artifact goes to the file, not stdout"
    );
    let artifact = std::fs::read(&first).unwrap();
    assert!(artifact.starts_with(b"\x7fELF"), "not an artifact");
    let (_, stored) = counts(&out);
    assert!(stored > 10, "functions compiled and kept: {stored}");

    // The same code again (another digest): every function from the cache.
    let second = dir.path().join("second.cwasm");
    let out = compile(&second, &support::unique(bytes));
    assert!(out.status.success(), "{out:?}");
    let (hits, stored_again) = counts(&out);
    // (A few functions compile to a new key each time.)
    assert!(
        stored_again * 5 < hits && hits * 10 >= stored * 8,
        "{hits} from the cache, {stored_again} compiled; {stored} the first time"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let out = compile(&dir.path().join("bad.cwasm"), b"\0asm\x0d\0\x01\0garbage");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
    assert!(!dir.path().join("bad.cwasm").exists());
}
