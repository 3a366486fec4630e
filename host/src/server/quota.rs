//! Per-shop quotas: calls in flight, plugin CPU time and request bytes
//! logged per window. A shop over its quota gets 429 with a retry time;
//! other shops are untouched.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `[quotas]` table of the server config, applied to every shop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Plugin calls of one shop running at once.
    pub concurrent_calls: u32,
    /// Plugin time one shop may use per window, in milliseconds.
    pub cpu_ms_per_window: u64,
    /// The window, in seconds.
    pub window_secs: u64,
    /// Request bodies one shop may have kept in the decision log per
    /// window, KiB: without it, one shop sending large bodies fast could
    /// fill the disk that every shop's log and state live on.
    pub log_kib_per_window: u64,
    /// Plugin state one shop may keep (keys + values, all its plugins), KiB.
    pub state_kib: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            concurrent_calls: 8,
            cpu_ms_per_window: 10_000,
            window_secs: 10,
            log_kib_per_window: 65_536,
            state_kib: 10_240,
        }
    }
}

/// A refusal: which quota, and when to try again.
#[derive(Debug, thiserror::Error)]
#[error("shop `{shop}` is over its {what} quota ({limit}); retry in {retry_after_secs} s")]
pub struct QuotaExceeded {
    pub shop: String,
    pub what: &'static str,
    pub limit: String,
    pub retry_after_secs: u64,
}

#[derive(Default)]
struct Usage {
    in_flight: AtomicU32,
    window: Mutex<Window>,
}

/// What a shop used in one window.
#[derive(Default)]
struct Window {
    number: i64,
    /// Plugin time, µs.
    cpu_us: u64,
    /// Request bytes logged.
    logged: u64,
}

impl Window {
    /// This window's usage, started afresh when `now_ms` is in a new one.
    fn at(&mut self, q: &Quotas, now_ms: i64) -> &mut Self {
        let current = now_ms.div_euclid(window_ms(q));
        if self.number != current {
            *self = Window {
                number: current,
                ..Window::default()
            };
        }
        self
    }
}

fn window_ms(q: &Quotas) -> i64 {
    (q.window_secs.max(1) * 1000) as i64
}

/// Usage of every shop, kept apart from the shops themselves so that a
/// reload does not reset it.
#[derive(Default)]
pub struct Meter {
    shops: Mutex<HashMap<String, Arc<Usage>>>,
    /// Refusals so far: every other one is told to wait a second longer,
    /// so that refused clients do not all come back at the same moment.
    refusals: std::sync::atomic::AtomicU64,
}

/// A slot for one call; released when dropped.
pub struct Permit(Arc<Usage>);

impl Permit {
    /// The call is over: free its slot and charge the `used` plugin time
    /// to its shop in the window of `now_ms`.
    pub fn charge(self, q: &Quotas, now_ms: i64, used: Duration) {
        let mut w = self.0.window.lock().unwrap_or_else(|e| e.into_inner());
        w.at(q, now_ms).cpu_us += used.as_micros() as u64;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Meter {
    fn usage(&self, shop: &str) -> Arc<Usage> {
        let mut shops = self.shops.lock().unwrap_or_else(|e| e.into_inner());
        // Look up before `entry`: it would copy the name on every call.
        if let Some(usage) = shops.get(shop) {
            return usage.clone();
        }
        shops.entry(shop.to_string()).or_default().clone()
    }

    /// Whether `shop` would be refused now, without taking a slot: a cheap
    /// early answer before a request's body is parsed. [`Meter::admit`]
    /// still decides.
    pub fn check(&self, q: &Quotas, shop: &str, now_ms: i64) -> Result<(), QuotaExceeded> {
        let usage = self.usage(shop);
        // Any request has a byte: a shop whose log budget is spent is out.
        self.check_window(q, shop, &usage, now_ms, 1, false)?;
        if usage.in_flight.load(Ordering::Acquire) >= q.concurrent_calls {
            return Err(self.over_concurrency(q, shop));
        }
        Ok(())
    }

    /// Admit one call of `shop` at `now_ms` whose request of `bytes` will
    /// be logged, or say which quota it is over.
    pub fn admit(
        &self,
        q: &Quotas,
        shop: &str,
        now_ms: i64,
        bytes: usize,
    ) -> Result<Permit, QuotaExceeded> {
        let usage = self.usage(shop);
        if usage.in_flight.fetch_add(1, Ordering::AcqRel) >= q.concurrent_calls {
            usage.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.over_concurrency(q, shop));
        }
        if let Err(e) = self.check_window(q, shop, &usage, now_ms, bytes as u64, true) {
            usage.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(Permit(usage))
    }

    /// Refuse if the shop's plugin time in the current window is used up,
    /// or `bytes` more would go over its log budget; with `take`, count
    /// them as logged.
    fn check_window(
        &self,
        q: &Quotas,
        shop: &str,
        usage: &Usage,
        now_ms: i64,
        bytes: u64,
        take: bool,
    ) -> Result<(), QuotaExceeded> {
        let mut w = usage.window.lock().unwrap_or_else(|e| e.into_inner());
        let w = w.at(q, now_ms);
        let left_ms = (w.number + 1) * window_ms(q) - now_ms;
        if w.cpu_us >= q.cpu_ms_per_window * 1000 {
            return Err(self.refuse(
                shop,
                "plugin time",
                format!("{} ms per {} s", q.cpu_ms_per_window, q.window_secs),
                left_ms,
            ));
        }
        if w.logged + bytes > q.log_kib_per_window * 1024 {
            return Err(self.refuse(
                shop,
                "decision log",
                format!(
                    "{} KiB of requests per {} s",
                    q.log_kib_per_window, q.window_secs
                ),
                left_ms,
            ));
        }
        if take {
            w.logged += bytes;
        }
        Ok(())
    }

    fn over_concurrency(&self, q: &Quotas, shop: &str) -> QuotaExceeded {
        self.refuse(
            shop,
            "concurrent calls",
            format!("{} at once", q.concurrent_calls),
            1000,
        )
    }

    fn refuse(
        &self,
        shop: &str,
        what: &'static str,
        limit: String,
        retry_ms: i64,
    ) -> QuotaExceeded {
        metrics::counter!("kefu_quota_rejections_total", "shop" => shop.to_string(), "quota" => what).increment(1);
        let spread = self.refusals.fetch_add(1, Ordering::Relaxed) % 2;
        QuotaExceeded {
            shop: shop.into(),
            what,
            limit,
            retry_after_secs: (retry_ms.max(1) as u64).div_ceil(1000) + spread,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quotas() -> Quotas {
        Quotas {
            concurrent_calls: 2,
            cpu_ms_per_window: 100,
            window_secs: 10,
            log_kib_per_window: 1,
            state_kib: 1,
        }
    }

    #[test]
    fn concurrent_calls_are_capped_per_shop() {
        let meter = Meter::default();
        let q = quotas();
        let a1 = meter.admit(&q, "a", 0, 0).unwrap();
        let _a2 = meter.admit(&q, "a", 0, 0).unwrap();
        let err = meter
            .admit(&q, "a", 0, 0)
            .err()
            .expect("third call refused");
        assert_eq!((err.what, err.retry_after_secs), ("concurrent calls", 1));
        assert!(
            meter.admit(&q, "b", 0, 0).is_ok(),
            "another shop is not affected"
        );
        drop(a1);
        assert!(
            meter.admit(&q, "a", 0, 0).is_ok(),
            "a finished call frees its slot"
        );
    }

    #[test]
    fn plugin_time_is_budgeted_per_window() {
        let meter = Meter::default();
        let q = quotas();
        let permit = meter.admit(&q, "a", 1_000, 0).unwrap();
        permit.charge(&q, 1_000, Duration::from_millis(100));
        let err = meter
            .admit(&q, "a", 4_000, 0)
            .err()
            .expect("budget used up");
        assert_eq!((err.what, err.retry_after_secs), ("plugin time", 6));
        assert!(meter.admit(&q, "b", 4_000, 0).is_ok());
        assert!(
            meter.admit(&q, "a", 10_000, 0).is_ok(),
            "a new window starts afresh"
        );
    }

    #[test]
    fn a_check_takes_no_slot_and_refusals_spread_their_retries() {
        let meter = Meter::default();
        let q = quotas();
        let _a1 = meter.admit(&q, "a", 0, 0).unwrap();
        assert!(meter.check(&q, "a", 0).is_ok(), "checking takes no slot");
        let _a2 = meter.admit(&q, "a", 0, 0).unwrap();
        let first = meter.check(&q, "a", 0).expect_err("both slots taken");
        let second = meter.admit(&q, "a", 0, 0).err().expect("both slots taken");
        assert_eq!(first.what, "concurrent calls");
        assert_eq!(
            (first.retry_after_secs, second.retry_after_secs),
            (1, 2),
            "refused clients are told to come back at different times"
        );
        assert!(meter.check(&q, "b", 0).is_ok());
    }

    #[test]
    fn request_bytes_logged_are_budgeted_per_window() {
        let meter = Meter::default();
        let q = quotas(); // 1 KiB per 10 s
        drop(meter.admit(&q, "a", 1_000, 600).unwrap());
        drop(meter.admit(&q, "a", 1_000, 400).unwrap());
        let err = meter.admit(&q, "a", 2_000, 100).err().expect("1 KiB used");
        assert_eq!((err.what, err.retry_after_secs), ("decision log", 8));
        assert!(meter.check(&q, "a", 2_000).is_ok(), "24 bytes are left");
        drop(meter.admit(&q, "a", 2_000, 24).unwrap());
        let err = meter.check(&q, "a", 2_000).expect_err("all 1,024 used");
        assert_eq!(
            err.what, "decision log",
            "refused before the body is parsed"
        );
        assert!(meter.admit(&q, "b", 2_000, 1_000).is_ok(), "per shop");
        assert!(
            meter.admit(&q, "a", 10_000, 1_000).is_ok(),
            "a new window starts afresh"
        );
    }
}
