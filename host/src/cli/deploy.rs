//! `kefu deploy --shop S --step STEP PLUGIN.wasm [--config FILE] [--canary
//! P]`: a new
//! version through `POST /v1/shops/{shop}/steps/{step}/versions`, the
//! component and its config together.

use super::client::{Body, Connection, Failure, Needs, show};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DeployArgs {
    #[arg(long)]
    shop: String,
    /// The step (world or endpoint name).
    #[arg(long)]
    step: String,
    /// The component (.wasm); without it, `--config` alone makes a new
    /// version of the active component.
    plugin: Option<PathBuf>,
    /// The plugin's config (a .toml table or a .json object).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve the new version to this percent of the shop's customers first
    /// (`kefu canary` promotes or aborts it).
    #[arg(long)]
    canary: Option<f64>,
    #[command(flatten)]
    conn: Connection,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))
}

pub fn run(args: DeployArgs) -> ExitCode {
    let mut parts = Vec::new();
    if let Some(plugin) = &args.plugin {
        match read(plugin) {
            Ok(bytes) => parts.push(("component", "plugin.wasm", "application/wasm", bytes)),
            Err(f) => return f.report(),
        }
    }
    if let Some(config) = &args.config {
        let json = config.extension().is_some_and(|e| e == "json");
        let (name, kind) = if json {
            ("config.json", "application/json")
        } else {
            ("config.toml", "application/toml")
        };
        match read(config) {
            Ok(bytes) => parts.push(("config", name, kind, bytes)),
            Err(f) => return f.report(),
        }
    }
    if parts.is_empty() {
        return Failure::Usage("give the plugin file, --config, or both".into()).report();
    }
    if let Some(percent) = args.canary {
        let text = percent.to_string().into_bytes();
        parts.push(("canary", "canary", "text/plain", text));
    }
    let boundary = "kefu-cli-7f3c9a1d5b";
    let mut bytes = Vec::new();
    for (name, file, kind, content) in &parts {
        bytes.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: {kind}\r\n\r\n"
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(content);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let body = Body {
        content_type: format!("multipart/form-data; boundary={boundary}"),
        bytes,
    };
    let path = format!("/v1/shops/{}/steps/{}/versions", args.shop, args.step);
    match args.conn.call("POST", &path, Needs::Admin, Some(body)) {
        Ok(answer) => {
            show(&args.conn, &answer, |a| match a["status"].as_str() {
                Some("compiling") => println!(
                    "{} step {}: still compiling; it activates when done (kefu versions)",
                    args.shop, args.step
                ),
                Some("canary") => println!(
                    "{} step {}: version {} serving {}% of customers as a canary, digest {}, took {} ms",
                    args.shop,
                    args.step,
                    a["version"]["version"],
                    args.canary.unwrap_or_default(),
                    a["version"]["digest"].as_str().unwrap_or("-"),
                    a["took_ms"]
                ),
                _ => println!(
                    "{} step {}: version {} active, digest {}, took {} ms",
                    args.shop,
                    args.step,
                    a["version"]["version"],
                    a["version"]["digest"].as_str().unwrap_or("-"),
                    a["took_ms"]
                ),
            });
            ExitCode::SUCCESS
        }
        Err(f) => f.report(),
    }
}
