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
    let body = Body::multipart(&parts);
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
