//! `kefu versions --shop S --step STEP`: a step's versions
//! (`GET /v1/shops/{shop}/steps/{step}/versions`).

use super::client::{Connection, Needs, cell, show, table, time_ms};
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
    match args.conn.call("GET", &path, Needs::Admin, None) {
        Ok(answer) => {
            show(&args.conn, &answer, |a| {
                let rows: Vec<Vec<String>> = a["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| {
                        vec![
                            cell(&v["version"]),
                            cell(&v["status"]),
                            cell(&v["source"]),
                            v["digest"]
                                .as_str()
                                .map_or("-".into(), |d| d[..12.min(d.len())].to_string()),
                            cell(&v["actor"]),
                            time_ms(&v["at_ms"]),
                            cell(&v["config"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "version", "status", "source", "digest", "by", "at (UTC)", "config",
                    ],
                    &rows,
                );
            });
            ExitCode::SUCCESS
        }
        Err(f) => f.report(),
    }
}
