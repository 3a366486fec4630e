//! Builds every guest plugin once for the tests: the default plugins in
//! `plugins/` and the hostile ones in `tests/guests/`, for wasm32-wasip2.
//! Their paths reach the tests as `KEFU_WASM_*` compile-time variables.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("tests/ has a parent").to_path_buf();
    for dir in ["wit", "plugins", "tests/guests"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    let out = guest_target_dir();
    ensure_target();
    build(&root.join("plugins"), &out.join("plugins"));
    build(&root.join("tests/guests"), &out.join("guests"));

    let mut consts = String::new();
    let release = |dir: &str| out.join(dir).join(TARGET).join("release");
    for (name, dir, file) in [
        ("GREETING", "plugins", "kefu_greeting"),
        ("ORDER_CONFIRMATION", "plugins", "kefu_order_confirmation"),
        ("REFUND_POLICY", "plugins", "kefu_refund_policy"),
        ("REVISIT_PLANNER", "plugins", "kefu_revisit_planner"),
        ("HOSTILE", "guests", "kefu_hostile"),
        ("WRONG_SIGNATURE", "guests", "kefu_wrong_signature"),
    ] {
        let path = release(dir).join(format!("{file}.wasm"));
        assert!(path.exists(), "guest build did not produce {}", path.display());
        consts.push_str(&format!(
            "/// Built from the `{file}` guest crate.\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    std::fs::write(PathBuf::from(env("OUT_DIR")).join("artifacts.rs"), consts).unwrap();
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"))
}

/// `$KEFU_GUEST_TARGET_DIR`, else `wasm-guests/` beside this build's own
/// target directory (OUT_DIR is `<target>/<profile>/build/<pkg>/out`).
fn guest_target_dir() -> PathBuf {
    println!("cargo:rerun-if-env-changed=KEFU_GUEST_TARGET_DIR");
    if let Ok(dir) = std::env::var("KEFU_GUEST_TARGET_DIR") {
        return dir.into();
    }
    let out = PathBuf::from(env("OUT_DIR"));
    out.ancestors().nth(4).expect("OUT_DIR is inside a target dir").join("wasm-guests")
}

/// Install the wasm target through rustup when it is missing.
fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET))
        .unwrap_or(false);
    if !installed {
        println!("cargo:warning=installing the {TARGET} target with rustup");
        let ok = Command::new("rustup").args(["target", "add", TARGET]).status().map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "cannot install {TARGET}: run `rustup target add {TARGET}`");
    }
}

fn build(workspace: &Path, target_dir: &Path) {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--target-dir"])
        .arg(target_dir);
    // Nothing of the outer build's configuration may leak into the guests.
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key.starts_with("RUSTC") || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
    let status = cmd.status().expect("run cargo for the guest plugins");
    assert!(status.success(), "building guests in {} failed", workspace.display());
}
