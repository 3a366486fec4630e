//! `kefu rollback --shop S --step STEP [--to N]`: back to the version
//! before the active one, or to N (`POST .../rollback`).

use super::client::{Body, Connection, Needs, show};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct RollbackArgs {
    #[arg(long)]
    shop: String,
    #[arg(long)]
    step: String,
    /// The version to make active (default: the one before).
    #[arg(long)]
    to: Option<u64>,
    #[command(flatten)]
    conn: Connection,
}

pub fn run(args: RollbackArgs) -> ExitCode {
    let path = format!("/v1/shops/{}/steps/{}/rollback", args.shop, args.step);
    let body = args.to.map(|v| Body {
        content_type: "application/json".into(),
        bytes: serde_json::json!({ "version": v }).to_string().into_bytes(),
    });
    match args.conn.call("POST", &path, Needs::Admin, body) {
        Ok(answer) => {
            show(&args.conn, &answer, |a| {
                println!(
                    "{} step {}: version {} active again, digest {}",
                    args.shop,
                    args.step,
                    a["version"]["version"],
                    a["version"]["digest"].as_str().unwrap_or("-")
                )
            });
            ExitCode::SUCCESS
        }
        Err(f) => f.report(),
    }
}
