//! `kefu new` makes a project per language and step that builds with its
//! documented command and runs under `kefu check` and `kefu run` as is.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::kefu;

const STEPS: [&str; 4] = [
    "greeting",
    "order-confirmation",
    "refund-policy",
    "revisit-planner",
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

/// `kefu new`, then check and run what `build` produced.
fn scaffold(lang: &str, step: &str, root: &Path, build: impl Fn(&Path) -> PathBuf) {
    let dir = root.join(format!("{lang}-{step}"));
    ok(
        kefu()
            .args(["new", "--step", step, "--lang", lang])
            .arg(&dir),
        "kefu new",
    );
    assert!(dir.join("README.md").exists() && dir.join("wit/workflow.wit").exists());
    let wasm = build(&dir);
    let out = kefu().arg("check").arg(&wasm).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("implements world `{step}`")),
        "{lang} {step}: {text}"
    );
    let out = kefu()
        .args(["run", "--step", step, "--plugin"])
        .arg(&wasm)
        .arg("--input")
        .arg(dir.join("sample-input.json"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["output"].is_object(), "{lang} {step}: {report:#}");
}

#[test]
fn rust_projects_build_and_run() {
    let root = tempfile::tempdir().unwrap();
    // One target dir for the four, so wit-bindgen compiles once.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("scaffold-target");
    for step in STEPS {
        scaffold("rust", step, root.path(), |dir| {
            ok(
                Command::new("cargo")
                    .args([
                        "build",
                        "--release",
                        "--target",
                        "wasm32-wasip2",
                        "--target-dir",
                    ])
                    .arg(&target)
                    .current_dir(dir)
                    .env_remove("CARGO_TARGET_DIR"),
                "cargo build",
            );
            let name = dir.file_name().unwrap().to_str().unwrap().replace('-', "_");
            target
                .join("wasm32-wasip2/release")
                .join(format!("{name}.wasm"))
        });
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
    for step in STEPS {
        scaffold("python", step, root.path(), |dir| {
            ok(
                Command::new(componentize_py())
                    .args([
                        "-d",
                        "wit",
                        "-w",
                        step,
                        "componentize",
                        "app",
                        "-o",
                        "plugin.wasm",
                    ])
                    .current_dir(dir),
                "componentize-py",
            );
            dir.join("plugin.wasm")
        });
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
        scaffold("js", step, root.path(), |dir| {
            std::os::unix::fs::symlink(&modules, dir.join("node_modules")).unwrap();
            ok(
                Command::new("npm").args(["run", "build"]).current_dir(dir),
                "npm run build",
            );
            dir.join("plugin.wasm")
        });
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
