//! `kefu decisions --shop S [--customer ID] [--step STEP] [--since T]`:
//! the decision log, newest first (`GET /v1/shops/{shop}/decisions`).

use super::client::{Connection, Needs, cell, list, time_ms};
use clap::Args;
use std::process::ExitCode;

#[derive(Args)]
pub struct DecisionsArgs {
    #[arg(long)]
    shop: String,
    /// Only decisions about this customer (the input's `customer.id`).
    #[arg(long)]
    customer: Option<String>,
    #[arg(long)]
    step: Option<String>,
    /// From this time on, unix milliseconds.
    #[arg(long)]
    since: Option<i64>,
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    conn: Connection,
}

pub fn run(args: DecisionsArgs) -> ExitCode {
    let mut query = vec![format!("limit={}", args.limit)];
    if let Some(c) = &args.customer {
        query.push(format!("customer={}", urlencode(c)));
    }
    if let Some(s) = &args.step {
        query.push(format!("step={}", urlencode(s)));
    }
    if let Some(t) = args.since {
        query.push(format!("since={t}"));
    }
    let path = format!("/v1/shops/{}/decisions?{}", args.shop, query.join("&"));
    let header = ["id", "at (UTC)", "step", "version", "customer", "outcome"];
    list(&args.conn, &path, Needs::Shop, "decisions", &header, |d| {
        let outcome = if d["error"].is_null() {
            summary(&d["output"])
        } else {
            format!("error {}", cell(&d["error"]["code"]))
        };
        vec![
            cell(&d["id"]),
            time_ms(&d["at_ms"]),
            cell(&d["step"]),
            cell(&d["version"]),
            cell(&d["input"]["customer"]["id"]),
            outcome,
        ]
    })
}

/// A short line for an output: its outcome or verdict when it has one.
fn summary(output: &serde_json::Value) -> String {
    for key in ["outcome", "verdict"] {
        match &output[key] {
            serde_json::Value::Null => {}
            serde_json::Value::Object(o) => {
                return o.keys().next().cloned().unwrap_or_default();
            }
            other => return cell(other),
        }
    }
    if let Some(n) = output["revisits"].as_array() {
        return format!("{} revisit(s)", n.len());
    }
    let text = output["reply"].as_str().unwrap_or("ok");
    text.chars().take(24).collect()
}

/// Percent-encode a query value.
pub fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
