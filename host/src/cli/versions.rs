//! `kefu versions --shop S --step STEP`: a step's versions
//! (`GET /v1/shops/{shop}/steps/{step}/versions`).

use super::client::{Connection, Needs, cell, list, time_ms};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct VersionsArgs {
    #[arg(long)]
    shop: String,
    #[arg(long)]
    step: String,
    #[command(flatten)]
    conn: Connection,
}

pub fn run(args: VersionsArgs) -> ExitCode {
    let path = format!("/v1/shops/{}/steps/{}/versions", args.shop, args.step);
    let header = [
        "version", "status", "source", "digest", "by", "at (UTC)", "config", "changes",
    ];
    list(&args.conn, &path, Needs::Admin, "versions", &header, |v| {
        let digest = v["digest"].as_str().unwrap_or("-");
        vec![
            cell(&v["version"]),
            cell(&v["status"]),
            cell(&v["source"]),
            digest.chars().take(12).collect(),
            cell(&v["actor"]),
            time_ms(&v["at_ms"]),
            cell(&v["config"]),
            v["changes"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_default(),
        ]
    })
}
