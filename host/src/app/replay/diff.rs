//! How two answers differ: the decision each names (its outcome label)
//! and the output fields that changed.

use crate::steps::Step;
use serde_json::Value;

/// The decision an answer names, per step: a refund's outcome, a
/// confirmation's verdict, whether a greeting hands off, how many revisits
/// a plan makes.
pub fn outcome_label(step: Step, output: &Value) -> String {
    let field = match step {
        Step::RefundPolicy => "outcome",
        Step::OrderConfirmation => "verdict",
        Step::Greeting => "hand_off",
        Step::RevisitPlanner => "revisits",
        Step::Workflow => "actions",
    };
    match &output[field] {
        Value::String(s) => s.to_lowercase(),
        Value::Object(map) if map.len() == 1 => map.keys().next().expect("one key").to_lowercase(),
        Value::Bool(b) => format!("{field}={b}"),
        Value::Array(items) => format!("{} {field}", items.len()),
        other => format!("{field}={other}"),
    }
}

/// The paths (`amount`, `revisits[0].due_at`) at which `a` and `b`
/// differ, leaves only.
pub fn changed_paths(a: &Value, b: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(a, b, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, path: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let next = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    next,
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(p, q, format!("{path}[{i}]"), out);
            }
        }
        _ if a != b => out.push(if path.is_empty() {
            "(output)".into()
        } else {
            path
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_paths() {
        let approve = json!({"outcome": "Approve", "amount": 100, "message": "ok"});
        let reject = json!({"outcome": {"Reject": "late"}, "amount": 0, "message": "no"});
        assert_eq!(outcome_label(Step::RefundPolicy, &approve), "approve");
        assert_eq!(outcome_label(Step::RefundPolicy, &reject), "reject");
        assert_eq!(
            changed_paths(&reject, &approve),
            ["amount", "message", "outcome"]
        );
        let plan = |n: i64| json!({"revisits": [{"due_at": n}]});
        assert_eq!(changed_paths(&plan(1), &plan(2)), ["revisits[0].due_at"]);
        assert_eq!(outcome_label(Step::RevisitPlanner, &plan(1)), "1 revisits");
        assert_eq!(
            outcome_label(Step::Greeting, &json!({"hand_off": true})),
            "hand_off=true"
        );
    }
}
