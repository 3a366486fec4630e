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
    for name in [
        "greeting",
        "order_confirmation",
        "refund_policy",
        "revisit_planner",
    ] {
        let file = format!("kefu_{name}.wasm");
        std::fs::copy(dir.join(&file), out.join(&file))
            .unwrap_or_else(|e| panic!("copy {file}: {e}"));
    }
}
