//! JSON leniency shared by every body the host reads: a number written
//! with a zero fraction (`2.0`, `12800.0`) is the integer it equals, as
//! JSON Schema says and as Python's `json.dumps` of a float writes it.
//! Bodies are parsed as sent first; only one refused for a float where an
//! integer belongs is rewritten and parsed again, so the fast path pays
//! nothing.

use serde_json::Value;

/// Whether a serde error is a float found where an integer belongs.
pub fn is_float_for_integer(message: &str) -> bool {
    message.contains("invalid type: floating point")
}

/// `json` with every integral float written as an integer, or `None` when
/// it has none (or is not JSON).
pub fn integral_floats_as_integers(json: &[u8]) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(json).ok()?;
    if !rewrite(&mut value) {
        return None;
    }
    serde_json::to_vec(&value).ok()
}

/// Rewrite in place; whether anything changed.
fn rewrite(value: &mut Value) -> bool {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(f64::NAN);
            // Exactly representable integers only (|f| < 2^63).
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                *value = if f < 0.0 {
                    Value::from(f as i64)
                } else {
                    Value::from(f as u64)
                };
                true
            } else {
                false
            }
        }
        Value::Array(items) => items.iter_mut().fold(false, |any, v| rewrite(v) | any),
        Value::Object(map) => map.values_mut().fold(false, |any, v| rewrite(v) | any),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_become_integers_and_nothing_else_changes() {
        let out =
            integral_floats_as_integers(br#"{"a": 2.0, "b": [1.5, -3.0, 4], "c": "5.0"}"#).unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"a": 2, "b": [1.5, -3, 4], "c": "5.0"})
        );
        assert!(integral_floats_as_integers(br#"{"a": 2, "b": 1.5}"#).is_none());
        assert!(integral_floats_as_integers(b"{").is_none());
        assert!(integral_floats_as_integers(b"1e300").is_none());
        // Exactly, where a float's steps are wider than 1 (schemathesis
        // found the default parser landing a quarter off).
        let out = integral_floats_as_integers(br#"{"a": 2030097859998193.0}"#).unwrap();
        assert_eq!(out, br#"{"a":2030097859998193}"#);
    }
}
