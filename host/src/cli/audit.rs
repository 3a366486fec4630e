//! `kefu audit [--shop S]`: deploys, rollbacks and refusals, newest first
//! (`GET /v1/audit`).

use super::client::{Connection, Needs, cell, show, table, time_ms};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct AuditArgs {
    #[arg(long)]
    shop: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    conn: Connection,
}

pub fn run(args: AuditArgs) -> ExitCode {
    let mut path = format!("/v1/audit?limit={}", args.limit);
    if let Some(s) = &args.shop {
        path.push_str(&format!("&shop={}", super::decisions::urlencode(s)));
    }
    match args.conn.call("GET", &path, Needs::Admin, None) {
        Ok(answer) => {
            show(&args.conn, &answer, |a| {
                let rows: Vec<Vec<String>> = a["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        vec![
                            time_ms(&e["at_ms"]),
                            cell(&e["shop"]),
                            cell(&e["step"]),
                            cell(&e["action"]),
                            cell(&e["version"]),
                            cell(&e["actor"]),
                            cell(&e["reason"]),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "at (UTC)", "shop", "step", "action", "version", "by", "reason",
                    ],
                    &rows,
                );
            });
            ExitCode::SUCCESS
        }
        Err(f) => f.report(),
    }
}
