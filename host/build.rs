//! Bundles the default plugins into the `kefu` binary: a shop step with no
//! plugin of its own runs these.

#[path = "../plugins/build_guests.rs"]
mod build_guests;

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
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
