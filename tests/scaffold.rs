//! `kefu new` makes a project per language and step whose README's
//! commands work as written: it builds, `kefu check` and `kefu run` take
//! it, and its deploy `curl` deploys it to a running server.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::kefu;

const STEPS: [&str; 5] = [
    "greeting",
    "order-confirmation",
    "refund-policy",
    "revisit-planner",
    "workflow",
];

fn ok(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The commands of a README's `sh` blocks, one per entry (a line ending
/// in `\` continues on the next), comments dropped.
fn readme_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = !in_sh && line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = line.split("  #").next().unwrap_or("").trim_end();
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part.trim());
            pending.push(' ');
            continue;
        }
        pending.push_str(line.trim());
        if !pending.is_empty() {
            commands.push(std::mem::take(&mut pending));
        }
    }
    commands
}

/// Run one README command as written, in `dir`, with `kefu` on the PATH.
fn sh(dir: &Path, command: &str, env: &[(&str, &str)]) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_kefu")).parent().unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new("sh");
    cmd.args(["-c", command])
        .current_dir(dir)
        .env("PATH", path)
        // A cache of its own, gone with the project: each build of a
        // template is a new component (tens of MB compiled for Python or
        // JavaScript) that no later run uses.
        .env("KEFU_CACHE_DIR", dir.join(".kefu-compiled"))
        .env_remove("CARGO_TARGET_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "`{command}` in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Installs the test setup has already made (toolchains, packages): the
/// project gets them by `prepare`, not by running these lines.
fn is_install(command: &str) -> bool {
    [
        "rustup target add",
        "python3 -m venv",
        ".venv/bin/pip install",
        "npm install",
    ]
    .iter()
    .any(|i| command.starts_with(i))
}

/// `kefu new`, then the README's commands as written: build (installs
/// aside, which `prepare` stands in for), `kefu check`, `kefu run`, and,
/// when `server` is given, the deploy `curl` against it.
fn scaffold(
    lang: &str,
    step: &str,
    root: &Path,
    prepare: impl Fn(&Path),
    server: Option<&support::server::Server>,
) {
    let dir = root.join(format!("{lang}-{step}"));
    ok(
        kefu()
            .args(["new", "--step", step, "--lang", lang])
            .arg(&dir),
        "kefu new",
    );
    assert!(dir.join("README.md").exists() && dir.join("wit/workflow.wit").exists());
    prepare(&dir);
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    let commands = readme_commands(&readme);
    let mut checked = false;
    let mut ran = false;
    for command in &commands {
        if is_install(command) {
            continue;
        }
        if command.starts_with("curl") {
            let Some(server) = server else { continue };
            let command = command
                .replace(
                    "http://127.0.0.1:8080",
                    server.url("").trim_end_matches('/'),
                )
                .replace("/SHOP/", "/tea-oil/");
            let out = sh(
                &dir,
                &command,
                &[("KEFU_ADMIN_TOKEN", support::server::ADMIN)],
            );
            let answer: serde_json::Value = serde_json::from_str(&out)
                .unwrap_or_else(|e| panic!("`{command}` printed {out:?}: {e}"));
            assert_eq!(answer["status"], "active", "{lang} {step}: {answer}");
            continue;
        }
        let out = sh(&dir, command, &[]);
        if command.starts_with("kefu check") {
            assert!(
                out.contains(&format!("implements world `{step}`")),
                "{lang} {step}: {out}"
            );
            checked = true;
        }
        if command.starts_with("kefu run") {
            let report: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert!(report["output"].is_object(), "{lang} {step}: {report:#}");
            ran = true;
        }
    }
    assert!(
        checked && ran,
        "{lang} {step}: the README lost its check or run: {commands:?}"
    );
}

#[test]
fn rust_projects_build_and_run() {
    let root = tempfile::tempdir().unwrap();
    // One target dir for the four (each project's `target` links to it),
    // so wit-bindgen compiles once.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    std::fs::create_dir_all(&target).unwrap();
    // The README's deploy, against a real server.
    let dir = tempfile::tempdir().unwrap();
    let shops = support::shops::lab(dir.path());
    let server =
        support::server::Server::start(&support::server::write_config(dir.path(), &shops, ""));
    for step in STEPS {
        let server = (step == "refund-policy").then_some(&server);
        scaffold(
            "rust",
            step,
            root.path(),
            |dir| std::os::unix::fs::symlink(&target, dir.join("target")).unwrap(),
            server,
        );
    }
}

fn componentize_py() -> PathBuf {
    std::env::var_os("KEFU_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap())
                .join(".cache/kefu/venv/bin/componentize-py")
        })
}

#[test]
fn python_projects_build_and_run() {
    let root = tempfile::tempdir().unwrap();
    // The README's venv is the setup's (componentize-py already in it).
    let venv = componentize_py()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    for step in STEPS {
        scaffold(
            "python",
            step,
            root.path(),
            |dir| std::os::unix::fs::symlink(&venv, dir.join(".venv")).unwrap(),
            None,
        );
    }
}

#[test]
fn javascript_projects_build_and_run() {
    let root = tempfile::tempdir().unwrap();
    // `npm install` would fetch the same pinned componentize-js that
    // plugins/js already installed: link it instead.
    let modules = support::root().join("plugins/js/node_modules");
    assert!(
        modules.exists(),
        "plugins/js/node_modules is missing: run plugins/setup.sh (tests/run.sh does)"
    );
    for step in STEPS {
        scaffold(
            "js",
            step,
            root.path(),
            |dir| std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap(),
            None,
        );
    }
}

#[test]
fn new_refuses_a_folder_that_is_not_empty() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("keep.txt"), "mine").unwrap();
    let out = kefu()
        .args(["new", "--step", "greeting", "--lang", "rust"])
        .arg(root.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not empty"));
}
