//! Building guest workspaces for wasm32-wasip2 from a build script. Shared
//! by `host/build.rs` (which bundles the default plugins into `kefu`) and
//! `tests/build.rs` (which also builds the hostile test plugins), through
//! `#[path]`, so both build the same way into the same place.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// `$KEFU_GUEST_TARGET_DIR`, else `wasm-guests/` beside the outer build's
/// target directory (OUT_DIR is `<target>/<profile>/build/<pkg>/out`).
pub fn guest_target_dir() -> PathBuf {
    println!("cargo:rerun-if-env-changed=KEFU_GUEST_TARGET_DIR");
    if let Ok(dir) = std::env::var("KEFU_GUEST_TARGET_DIR") {
        return dir.into();
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set"));
    out.ancestors()
        .nth(4)
        .expect("OUT_DIR is inside a target dir")
        .join("wasm-guests")
}

/// Install the wasm target through rustup when it is missing.
pub fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    if !installed {
        println!("cargo:warning=installing the {TARGET} target with rustup");
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .map(|s| s.success());
        assert!(
            matches!(ok, Ok(true)),
            "cannot install {TARGET}: run `rustup target add {TARGET}`"
        );
    }
}

/// Build the guest workspace at `workspace` in release mode into
/// `target_dir`; returns the folder holding the `.wasm` files.
pub fn build(workspace: &Path, target_dir: &Path) -> PathBuf {
    for path in watched(workspace) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    // Nothing of the outer build's configuration may leak into the guests.
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME")
            || key.starts_with("RUSTC")
            || key == "RUSTFLAGS"
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("run cargo for the guest plugins");
    assert!(
        status.success(),
        "building guests in {} failed",
        workspace.display()
    );
    target_dir.join(TARGET).join("release")
}

/// What a guest build depends on: the workspace's manifest and lock file
/// and its members' folders. Not the whole folder: other things live
/// beside the members (`plugins/python`, `plugins/js`), and a file written
/// there (a `__pycache__`, `node_modules`) must not rebuild `kefu`.
fn watched(workspace: &Path) -> Vec<PathBuf> {
    let manifest = workspace.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_default();
    let members: Vec<PathBuf> = text
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .map(|line| {
            line.split('"')
                .skip(1)
                .step_by(2)
                .map(|m| workspace.join(m))
                .collect()
        })
        .unwrap_or_default();
    if members.is_empty() {
        return vec![workspace.to_path_buf()];
    }
    let mut paths = vec![manifest, workspace.join("Cargo.lock")];
    paths.extend(members);
    paths
}
