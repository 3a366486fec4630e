//! `kefu canary --shop S --step STEP [--version N] --percent P | --promote
//! | --abort [--reason R]`: start or change a step's canary, promote or
//! abort it (`POST|DELETE .../canary`, `POST .../canary/promote`);
//! without an action, show it and its analysis (`GET .../canary`).

use super::client::{Body, Connection, Needs, show, table};
use clap::Args;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Args)]
pub struct CanaryArgs {
    #[arg(long)]
    shop: String,
    #[arg(long)]
    step: String,
    /// A recorded version to serve to --percent of customers (default:
    /// the running canary's, to change its percent).
    #[arg(long)]
    version: Option<u64>,
    /// Share of the shop's customers, above 0 and at most 100.
    #[arg(long, conflicts_with_all = ["promote", "abort"])]
    percent: Option<f64>,
    /// Automatic promotion: percents to go through while healthy, e.g.
    /// `25,50,100`.
    #[arg(long, value_delimiter = ',', requires = "percent")]
    steps: Vec<f64>,
    /// Seconds between automatic steps.
    #[arg(long, requires = "steps")]
    interval_secs: Option<u64>,
    /// Make the canary's version active for everyone.
    #[arg(long, conflicts_with = "abort")]
    promote: bool,
    /// Stop the canary: the stable version serves everyone.
    #[arg(long)]
    abort: bool,
    /// Why it is aborted (kept in the audit).
    #[arg(long, requires = "abort")]
    reason: Option<String>,
    #[command(flatten)]
    conn: Connection,
}

fn json_body(value: Value) -> Option<Body> {
    Some(Body {
        content_type: "application/json".into(),
        bytes: value.to_string().into_bytes(),
    })
}

pub fn run(args: CanaryArgs) -> ExitCode {
    let path = format!("/v1/shops/{}/steps/{}/canary", args.shop, args.step);
    let (method, path, body) = if args.promote {
        ("POST", format!("{path}/promote"), None)
    } else if args.abort {
        let reason = args.reason.clone().map(|r| json!({ "reason": r }));
        ("DELETE", path, reason.and_then(json_body))
    } else if let Some(percent) = args.percent {
        let mut plan = json!({ "percent": percent, "steps": args.steps });
        if let Some(v) = args.version {
            plan["version"] = json!(v);
        }
        if let Some(s) = args.interval_secs {
            plan["interval_secs"] = json!(s);
        }
        ("POST", path, json_body(plan))
    } else {
        ("GET", path, None)
    };
    match args.conn.call(method, &path, Needs::Admin, body) {
        Ok(answer) => {
            show(&args.conn, &answer, |a| print(&args, a));
            ExitCode::SUCCESS
        }
        Err(f) => f.report(),
    }
}

fn print(args: &CanaryArgs, a: &Value) {
    if args.promote || args.abort {
        let what = if args.promote {
            "active for everyone"
        } else {
            "aborted"
        };
        println!(
            "{} step {}: version {} {what}",
            args.shop, args.step, a["version"]["version"]
        );
        return;
    }
    println!(
        "{} step {}: version {} to {}% of customers (stable: version {}); analysis: {}",
        args.shop,
        args.step,
        a["version"],
        a["percent"].as_f64().unwrap_or_default(),
        a["stable_version"],
        a["analysis"]["verdict"].as_str().unwrap_or("-")
    );
    let side = |name: &str, s: &Value| {
        vec![
            name.to_string(),
            s["calls"].to_string(),
            s["errors"].to_string(),
            format!("{:.2}%", s["error_rate"].as_f64().unwrap_or(0.0) * 100.0),
            format!("{:.1}%", s["share"].as_f64().unwrap_or(0.0) * 100.0),
            format!("{:.2}", s["p99_ms"].as_f64().unwrap_or(0.0)),
        ]
    };
    let share = format!("{} share", a["share"].as_str().unwrap_or("decision"));
    table(
        &["side", "calls", "errors", "error rate", &share, "p99 ms"],
        &[side("stable", &a["stable"]), side("canary", &a["canary"])],
    );
    if let Some(detail) = a["analysis"]["detail"].as_str() {
        println!("regressed: {detail}");
    } else if let Some(reason) = a["analysis"]["reason"].as_str() {
        println!("waiting: {reason}");
    }
}
