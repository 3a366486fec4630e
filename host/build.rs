//! Bundles the default plugins into the `kefu` binary: a shop step with no
//! plugin of its own runs these; and stamps the build with its git commit
//! and that commit's date (`kefu --version`, `kefu_build_info`).

#[path = "../plugins/build_guests.rs"]
mod build_guests;

use std::path::{Path, PathBuf};

/// `git ARGS` in `root`, trimmed, when git is there and answers.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(root)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The commit and its date, as `KEFU_GIT_COMMIT` and `KEFU_COMMIT_DATE`
/// ("unknown" outside a git checkout); rebuilt when HEAD moves.
fn stamp(root: &Path) {
    let commit = git(root, &["rev-parse", "--short=12", "HEAD"]);
    let date = git(root, &["log", "-1", "--format=%cs"]);
    println!(
        "cargo:rustc-env=KEFU_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!(
        "cargo:rustc-env=KEFU_COMMIT_DATE={}",
        date.as_deref().unwrap_or("unknown")
    );
    if let Some(dir) = git(root, &["rev-parse", "--git-dir"]) {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let Some(head) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", dir.join(head).display());
        }
        let packed = dir.join("packed-refs");
        if packed.exists() {
            println!("cargo:rerun-if-changed={}", packed.display());
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    stamp(&root);
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    build_guests::ensure_target();
    let dir = build_guests::build(
        &root.join("plugins"),
        &build_guests::guest_target_dir().join("plugins"),
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // Every default plugin the plugins workspace builds; each step's module
    // includes its own (`steps/*.rs`, `DEFAULT_PLUGIN`).
    let mut copied = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("read the plugins' output folder").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("kefu_") && name.ends_with(".wasm") {
            std::fs::copy(&path, out.join(&name)).unwrap_or_else(|e| panic!("copy {name}: {e}"));
            copied += 1;
        }
    }
    assert!(copied > 0, "no default plugin in {}", dir.display());
}
