//! Helpers for tests that drive the real `kefu` binary.
#![allow(dead_code)]

pub mod hook;
pub mod inproc;
pub mod server;
pub mod shops;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[allow(unused_imports)]
pub use kefu_tests::{example, root, wasm};

/// The `kefu` binary built for these tests, with a private compile cache.
pub fn kefu() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kefu"));
    cmd.env(
        "KEFU_CACHE_DIR",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("kefu-cache"),
    );
    cmd
}

/// The default plugin file for a step.
pub fn default_plugin(step: &str) -> &'static str {
    match step {
        "greeting" => wasm::GREETING,
        "order-confirmation" => wasm::ORDER_CONFIRMATION,
        "refund-policy" => wasm::REFUND_POLICY,
        "revisit-planner" => wasm::REVISIT_PLANNER,
        "workflow" => wasm::WORKFLOW,
        other => panic!("no step {other}"),
    }
}

/// Options of one `kefu run`.
#[derive(Default)]
pub struct Run<'a> {
    pub now: &'a str,
    /// Example shop whose config to use (e.g. "tea-oil").
    pub shop: Option<&'a str>,
    pub state: Option<&'a Path>,
    pub plugin: Option<&'a str>,
}

/// `kefu run` of `examples/requests/<step>/<case>.json`; the JSON report.
pub fn run_example(step: &str, case: &str, opts: Run) -> Value {
    let out = run_raw(
        step,
        &example(&format!("requests/{step}/{case}.json")),
        opts,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kefu run printed no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report
}

pub fn run_raw(step: &str, input: &Path, opts: Run) -> Output {
    let mut cmd = kefu();
    cmd.args(["run", "--step", step, "--plugin"])
        .arg(opts.plugin.unwrap_or_else(|| default_plugin(step)))
        .arg("--input")
        .arg(input)
        .args(["--now", opts.now]);
    if let Some(shop) = opts.shop {
        cmd.arg("--config").arg(shop_config(shop, step));
    }
    if let Some(state) = opts.state {
        cmd.arg("--state").arg(state);
    }
    cmd.output().expect("run kefu")
}

pub fn shop_config(shop: &str, step: &str) -> PathBuf {
    example(&format!("shops/{shop}/config/{step}.toml"))
}

/// The `output` of a successful run, or a panic showing the error.
pub fn output(report: &Value) -> &Value {
    match report.get("output") {
        Some(o) => o,
        None => panic!("run failed: {report:#}"),
    }
}

/// Text of a JSON string field.
pub fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {v:#}"))
}

/// `bytes` (a component) with a custom section of its own: a new digest,
/// so loading it compiles (no cache has it).
pub fn unique(mut bytes: Vec<u8>) -> Vec<u8> {
    let stamp = format!("{:?}", std::time::SystemTime::now());
    let mut section = vec![9u8];
    section.extend_from_slice(b"kefu-test");
    section.extend_from_slice(stamp.as_bytes());
    bytes.push(0);
    bytes.push(section.len() as u8);
    bytes.extend_from_slice(&section);
    bytes
}
