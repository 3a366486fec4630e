//! `kefu revisits --shop S [--status due]`: a shop's revisits, earliest
//! due first (`GET /v1/shops/{shop}/revisits`).

use super::client::{Connection, Needs, cell, list};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct RevisitsArgs {
    #[arg(long)]
    shop: String,
    /// planned, due, done, unreachable or cancelled.
    #[arg(long)]
    status: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    conn: Connection,
}

pub fn run(args: RevisitsArgs) -> ExitCode {
    let mut path = format!("/v1/shops/{}/revisits?limit={}", args.shop, args.limit);
    if let Some(s) = &args.status {
        path.push_str(&format!("&status={}", super::decisions::urlencode(s)));
    }
    let header = [
        "id",
        "due (UTC)",
        "customer",
        "purpose",
        "status",
        "attempts",
    ];
    list(&args.conn, &path, Needs::Shop, "revisits", &header, |r| {
        let due = r["due_at"]
            .as_i64()
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string());
        vec![
            cell(&r["id"]),
            due,
            cell(&r["customer_id"]),
            cell(&r["purpose"]),
            cell(&r["status"]),
            format!("{}/{}", r["attempts_made"], r["max_attempts"]),
        ]
    })
}
