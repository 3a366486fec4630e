//! Builds every guest plugin once for the tests: the default plugins in
//! `plugins/` and the hostile ones in `tests/guests/`, for wasm32-wasip2.
//! Their paths reach the tests as constants in `kefu_tests::wasm`.

#[path = "../plugins/build_guests.rs"]
mod build_guests;

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("..");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    build_guests::ensure_target();
    let out = build_guests::guest_target_dir();
    let plugins = build_guests::build(&root.join("plugins"), &out.join("plugins"));
    let guests = build_guests::build(&root.join("tests/guests"), &out.join("guests"));

    let mut consts = String::new();
    for (name, dir, file) in [
        ("GREETING", &plugins, "kefu_greeting"),
        ("ORDER_CONFIRMATION", &plugins, "kefu_order_confirmation"),
        ("REFUND_POLICY", &plugins, "kefu_refund_policy"),
        ("REVISIT_PLANNER", &plugins, "kefu_revisit_planner"),
        ("WORKFLOW", &plugins, "kefu_workflow"),
        ("LOOPING_FLOW", &guests, "kefu_looping_flow"),
        ("HOSTILE", &guests, "kefu_hostile"),
        ("WRONG_SIGNATURE", &guests, "kefu_wrong_signature"),
    ] {
        let path = dir.join(format!("{file}.wasm"));
        assert!(
            path.exists(),
            "guest build did not produce {}",
            path.display()
        );
        consts.push_str(&format!(
            "/// Built from the `{file}` guest crate.\npub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    std::fs::write(out_dir.join("artifacts.rs"), consts).unwrap();
}
