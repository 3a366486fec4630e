//! `kefu audit [--shop S]`: deploys, rollbacks and refusals, newest first
//! (`GET /v1/audit`).

use super::client::{Connection, Needs, cell, list, time_ms};
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
    let header = [
        "at (UTC)", "shop", "step", "action", "version", "by", "reason",
    ];
    list(&args.conn, &path, Needs::Admin, "events", &header, |e| {
        ["shop", "step", "action", "version", "actor", "reason"]
            .iter()
            .fold(vec![time_ms(&e["at_ms"])], |mut row, k| {
                row.push(cell(&e[*k]));
                row
            })
    })
}
