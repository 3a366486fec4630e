//! The webhook outbox's delivery: every queued delivery is POSTed, signed
//! with its shop's secret, at least once. Deliveries run concurrently with
//! a limit per shop, so one shop's slow or dead endpoint delays only that
//! shop; a failed try is retried after a jittered exponential backoff, and
//! after `max_tries` the delivery is dead-lettered: kept, listed through
//! the API and tried again only when asked.

use crate::app::config::WebhookConfig;
use crate::app::registry::Registry;
use crate::storage::{ActionStatus, Delivery, Storage, StorageError};
use hmac::{Hmac, Mac};
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The header carrying a delivery's signature:
/// `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "kefu-signature";

/// The signature header's value for `body` sent at `t` (unix seconds).
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// How long to wait after the `tries`-th failed try: one second doubled
/// per try up to `max`, the upper half jittered so that deliveries that
/// failed together do not come back together.
pub fn backoff(tries: u32, max: Duration, jitter: u64) -> Duration {
    let max_ms = max.as_millis().max(1) as u64;
    let full = (1_000u64 << tries.saturating_sub(1).min(30)).min(max_ms);
    let half = full / 2;
    Duration::from_millis(half + jitter % (full - half + 1))
}

/// Delivers the outbox.
pub struct Deliverer {
    storage: Arc<dyn Storage>,
    registry: Arc<Registry>,
    config: WebhookConfig,
    agent: ureq::Agent,
    /// Deliveries being tried now, by key, and how many per shop.
    in_flight: Mutex<(HashSet<String>, HashMap<String, usize>)>,
}

impl Deliverer {
    pub fn new(storage: Arc<dyn Storage>, registry: Arc<Registry>, config: WebhookConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(config.timeout_secs.max(1))))
            .build()
            .into();
        Deliverer {
            storage,
            registry,
            config,
            agent,
            in_flight: Mutex::new(Default::default()),
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, (HashSet<String>, HashMap<String, usize>)> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start what is ready and may start now; how many started.
    fn dispatch(self: &Arc<Self>, now_ms: i64) -> Result<usize, StorageError> {
        let per_shop = self.config.per_shop.max(1);
        let ready =
            self.storage
                .deliveries_ready(now_ms, per_shop, 4 * self.config.concurrent.max(1))?;
        let mut started = 0;
        for d in ready {
            {
                let mut guard = self.in_flight();
                let (keys, shops) = &mut *guard;
                let total: usize = shops.values().sum();
                let of_shop = shops.get(&d.shop).copied().unwrap_or(0);
                if keys.contains(&d.key)
                    || of_shop >= per_shop
                    || total >= self.config.concurrent.max(1)
                {
                    continue;
                }
                keys.insert(d.key.clone());
                *shops.entry(d.shop.clone()).or_default() += 1;
            }
            let this = self.clone();
            let spawned = std::thread::Builder::new()
                .name("kefu-webhook".into())
                .spawn(move || this.deliver(d));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a webhook delivery");
                break;
            }
            started += 1;
        }
        Ok(started)
    }

    /// Try one delivery and record what happened.
    fn deliver(&self, mut d: Delivery) {
        let error = self.try_once(&d).err();
        let outcome = match &error {
            None => self.storage.remove_delivery(&d.key),
            Some(e) => {
                d.tries += 1;
                d.last_error = Some(e.clone());
                if d.tries >= self.config.max_tries.max(1) {
                    d.dead = true;
                    tracing::error!(key = %d.key, shop = %d.shop, tries = d.tries, error = %e, "webhook dead-lettered");
                } else {
                    let jitter =
                        std::collections::hash_map::RandomState::new().hash_one((&d.key, d.tries));
                    let wait = backoff(
                        d.tries,
                        Duration::from_secs(self.config.max_backoff_secs),
                        jitter,
                    );
                    d.next_try_ms = chrono::Utc::now().timestamp_millis() + wait.as_millis() as i64;
                    tracing::warn!(key = %d.key, shop = %d.shop, tries = d.tries, error = %e, retry_in_ms = wait.as_millis() as u64, "webhook failed; will retry");
                }
                self.storage.put_deliveries(std::slice::from_ref(&d))
            }
        };
        if let Err(e) = outcome {
            tracing::error!(error = %e, "cannot update the webhook outbox");
        }
        // A workflow action's delivery settles the action too.
        if let Some(id) = d.key.strip_prefix("action-").and_then(|id| id.parse().ok()) {
            let status = match (&error, d.dead) {
                (None, _) => Some(ActionStatus::Delivered),
                (Some(_), true) => Some(ActionStatus::Dead),
                (Some(_), false) => None,
            };
            if let Some(status) = status
                && let Err(e) = self.storage.set_action_status(&d.shop, id, status)
            {
                tracing::error!(error = %e, action = id, "cannot record an action's delivery");
            }
        }
        let label = match (&error, d.dead) {
            (None, _) => "delivered",
            (Some(_), false) => "failed",
            (Some(_), true) => "dead",
        };
        metrics::counter!("kefu_webhooks_total", "outcome" => label).increment(1);
        let mut guard = self.in_flight();
        let (keys, shops) = &mut *guard;
        keys.remove(&d.key);
        if let Some(n) = shops.get_mut(&d.shop) {
            *n -= 1;
            if *n == 0 {
                shops.remove(&d.shop);
            }
        }
    }

    /// POST the delivery once, signed with its shop's current secret.
    fn try_once(&self, d: &Delivery) -> Result<(), String> {
        let secret = self
            .registry
            .get(&d.shop)
            .and_then(|s| s.webhook.as_ref().map(|w| w.secret.clone()))
            .ok_or_else(|| format!("shop `{}` has no webhook secret now", d.shop))?;
        let t = chrono::Utc::now().timestamp();
        let response = self
            .agent
            .post(&d.url)
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                d.idempotency_key.as_deref().unwrap_or(&d.key),
            )
            .header(SIGNATURE_HEADER, sign(&secret, t, d.body.as_bytes()))
            .send(d.body.as_bytes())
            .map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", response.status().as_u16()))
        }
    }

    /// Dispatch until `stop`, on a thread of its own.
    pub fn spawn(self: Arc<Self>, stop: Arc<AtomicBool>) {
        std::thread::Builder::new()
            .name("kefu-webhooks".into())
            .spawn(move || {
                let said = crate::app::said::Said::default();
                while !stop.load(Ordering::Relaxed) {
                    let now_ms = chrono::Utc::now().timestamp_millis();
                    let sent = self.dispatch(now_ms);
                    if sent.is_ok() {
                        said.worked("reading the webhook outbox");
                    }
                    match sent {
                        Ok(0) => std::thread::sleep(Duration::from_millis(50)),
                        Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                        Err(e) => {
                            said.failed("cannot read the webhook outbox", &e);
                            std::thread::sleep(Duration::from_millis(500));
                        }
                    }
                }
            })
            .expect("spawn webhook thread");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The signature a receiver recomputes: a pinned vector, so that the
    /// documented recipe (HMAC-SHA256 of "<t>.<body>", hex) stays true.
    #[test]
    fn signatures_follow_the_documented_recipe() {
        assert_eq!(
            sign("whsec_test", 1_796_000_000, br#"{"event":"revisit.due"}"#),
            "t=1796000000,v1=".to_string()
                + &hex::encode({
                    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"whsec_test").unwrap();
                    mac.update(br#"1796000000.{"event":"revisit.due"}"#);
                    mac.finalize().into_bytes()
                })
        );
        assert_ne!(sign("a", 1, b"x"), sign("b", 1, b"x"));
        assert_ne!(sign("a", 1, b"x"), sign("a", 2, b"x"));
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        let max = Duration::from_secs(300);
        for tries in 1..40 {
            let full = (1_000u64 << (tries - 1).min(30)).min(300_000);
            for jitter in [0, 1, 7_777, u64::MAX] {
                let wait = backoff(tries, max, jitter).as_millis() as u64;
                assert!(wait >= full / 2 && wait <= full, "try {tries}: {wait} ms");
            }
        }
        assert!(backoff(1, max, 0) <= Duration::from_secs(1));
        assert_eq!(backoff(30, max, u64::MAX).as_secs() / 150, 1);
    }
}

/// Why a webhook operation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("no webhook delivery `{0}` in this shop")]
    NotFound(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A queued or dead-lettered delivery, as the API lists it.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    /// The `Idempotency-Key` every try of it carries.
    pub key: String,
    pub url: String,
    /// "queued" (will be tried at `next_try_ms`) or "dead" (gave up).
    pub status: &'static str,
    pub tries: u32,
    pub next_try_ms: i64,
    pub last_error: Option<String>,
    /// What is POSTed.
    #[schema(value_type = Object)]
    pub body: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        DeliveryView {
            status: if d.dead { "dead" } else { "queued" },
            body: serde_json::from_str(&d.body).unwrap_or(serde_json::Value::String(d.body)),
            key: d.key,
            url: d.url,
            tries: d.tries,
            next_try_ms: d.next_try_ms,
            last_error: d.last_error,
        }
    }
}

/// A shop's undelivered webhooks, dead-lettered only when `dead_only`.
pub fn list(
    storage: &dyn Storage,
    shop: &str,
    dead_only: bool,
) -> Result<Vec<DeliveryView>, StorageError> {
    Ok(storage
        .deliveries(shop)?
        .into_iter()
        .filter(|d| d.dead || !dead_only)
        .map(DeliveryView::from)
        .collect())
}

/// Try a delivery again now: a dead-lettered one comes back with its
/// tries counted from zero.
pub fn retry(
    storage: &dyn Storage,
    shop: &str,
    key: &str,
    now_ms: i64,
) -> Result<DeliveryView, WebhookError> {
    let mut d = storage
        .delivery(key)?
        .filter(|d| d.shop == shop)
        .ok_or_else(|| WebhookError::NotFound(key.to_string()))?;
    if d.dead {
        d.dead = false;
        d.tries = 0;
    }
    d.next_try_ms = now_ms;
    storage.put_deliveries(std::slice::from_ref(&d))?;
    Ok(d.into())
}
