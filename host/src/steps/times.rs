//! The times a step's input may carry: plugins do date arithmetic on
//! them, so the host refuses what no real order has (a `delivered_at` of
//! i64::MAX, a year-0 payment) before any plugin runs.

use super::InputError;
use crate::bindings::types::Order;

/// Earliest time accepted in an input: 2000-01-01T00:00:00Z.
pub const MIN_TIME: i64 = 946_684_800;
/// Latest time accepted in an input: 2100-01-01T00:00:00Z.
pub const MAX_TIME: i64 = 4_102_444_800;

/// `t`, at `path`, is a plausible unix time in seconds.
pub fn check(path: &str, t: i64) -> Result<(), InputError> {
    if (MIN_TIME..MAX_TIME).contains(&t) {
        return Ok(());
    }
    let hint = if t > MAX_TIME * 1000 / 2 {
        " (unix seconds are expected; this looks like milliseconds or more)"
    } else {
        ""
    };
    Err(InputError {
        path: path.into(),
        message: format!(
            "time {t} is outside 2000-01-01 to 2100-01-01 ({MIN_TIME} to {MAX_TIME} unix seconds){hint}"
        ),
    })
}

/// Every time of an order, at `path`.
pub fn check_order(path: &str, order: &Order) -> Result<(), InputError> {
    check(&format!("{path}.created_at"), order.created_at)?;
    for (field, t) in [
        ("paid_at", order.paid_at),
        ("shipped_at", order.shipped_at),
        ("delivered_at", order.delivered_at),
    ] {
        if let Some(t) = t {
            check(&format!("{path}.{field}"), t)?;
        }
    }
    Ok(())
}
