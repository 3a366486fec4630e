//! Per-shop quotas: calls in flight, plugin CPU time and request bytes
//! logged per window. A shop over its quota gets 429 with a retry time;
//! other shops are untouched.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// One shop's usage. Refusals are counted per shop: every other one is
/// told to wait a second longer, so that refused clients do not all come
/// back at the same moment.
struct Usage {
    shop: String,
    in_flight: AtomicU32,
    window: Mutex<Window>,
    refusals: AtomicU64,
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
}

impl Meter {
    /// The meter of `shop`: looked up once per request, then checked and
    /// admitted against without another lookup.
    pub fn shop(&self, shop: &str) -> ShopMeter {
        let mut shops = self.shops.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(usage) = shops.get(shop) {
            return ShopMeter {
                usage: usage.clone(),
            };
        }
        let usage = Arc::new(Usage {
            shop: shop.to_string(),
            in_flight: AtomicU32::new(0),
            window: Mutex::default(),
            refusals: AtomicU64::new(0),
        });
        shops.insert(shop.to_string(), usage.clone());
        ShopMeter { usage }
    }
}

/// One shop's quotas, for one request.
pub struct ShopMeter {
    usage: Arc<Usage>,
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

impl ShopMeter {
    /// Whether the shop would be refused now, without taking a slot: a
    /// cheap early answer before a request's body is parsed.
    /// [`ShopMeter::admit`] still decides.
    pub fn check(&self, q: &Quotas, now_ms: i64) -> Result<(), QuotaExceeded> {
        // Any request has a byte: a shop whose log budget is spent is out.
        self.check_window(q, now_ms, 1, false)?;
        if self.usage.in_flight.load(Ordering::Acquire) >= q.concurrent_calls {
            return Err(self.over_concurrency(q));
        }
        Ok(())
    }

    /// Admit one call at `now_ms` whose request of `bytes` will be logged,
    /// or say which quota it is over.
    pub fn admit(&self, q: &Quotas, now_ms: i64, bytes: usize) -> Result<Permit, QuotaExceeded> {
        let usage = &self.usage;
        if usage.in_flight.fetch_add(1, Ordering::AcqRel) >= q.concurrent_calls {
            usage.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.over_concurrency(q));
        }
        if let Err(e) = self.check_window(q, now_ms, bytes as u64, true) {
            usage.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(Permit(usage.clone()))
    }

    /// Refuse if the shop's plugin time in the current window is used up,
    /// or `bytes` more would go over its log budget; with `take`, count
    /// them as logged.
    fn check_window(
        &self,
        q: &Quotas,
        now_ms: i64,
        bytes: u64,
        take: bool,
    ) -> Result<(), QuotaExceeded> {
        let mut w = self.usage.window.lock().unwrap_or_else(|e| e.into_inner());
        let w = w.at(q, now_ms);
        let left_ms = (w.number + 1) * window_ms(q) - now_ms;
        if w.cpu_us >= q.cpu_ms_per_window * 1000 {
            return Err(self.refuse(
                "plugin time",
                format!("{} ms per {} s", q.cpu_ms_per_window, q.window_secs),
                left_ms,
            ));
        }
        if w.logged + bytes > q.log_kib_per_window * 1024 {
            return Err(self.refuse(
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

    fn over_concurrency(&self, q: &Quotas) -> QuotaExceeded {
        self.refuse(
            "concurrent calls",
            format!("{} at once", q.concurrent_calls),
            1000,
        )
    }

    fn refuse(&self, what: &'static str, limit: String, retry_ms: i64) -> QuotaExceeded {
        metrics::counter!("kefu_quota_rejections_total", "shop" => self.usage.shop.clone(), "quota" => what).increment(1);
        let spread = self.usage.refusals.fetch_add(1, Ordering::Relaxed) % 2;
        QuotaExceeded {
            shop: self.usage.shop.clone(),
            what,
            limit,
            retry_after_secs: (retry_ms.max(1) as u64).div_ceil(1000) + spread,
        }
    }
}

#[cfg(test)]
mod tests;
