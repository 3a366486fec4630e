//! The shops being served and the plugin active for each of their steps.
//! The whole map is swapped atomically, so a call always sees one
//! consistent version of a shop.

use super::replay::shadow::Shadow;
use super::rollout::{Canary, StepPolicy};
use crate::runtime::{Plugin, ReusePool};
use crate::steps::Step;
use crate::storage::{VersionRecord, VersionSource};
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Where an active plugin came from, as the API shows it
/// (`{"kind": "file", "path": ...}`).
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum PluginSource {
    /// The default plugin bundled in the binary.
    Bundled,
    /// A file in the shop's folder.
    #[schema(value_type = String)]
    File(PathBuf),
    /// Uploaded through the admin API.
    Api,
}

impl PluginSource {
    /// The source of a stored version.
    pub fn of(record: &VersionRecord) -> Self {
        match (record.source, &record.path) {
            (VersionSource::File, Some(path)) => PluginSource::File(path.into()),
            (VersionSource::Api, _) => PluginSource::Api,
            _ => PluginSource::Bundled,
        }
    }

    /// What the version record keeps of it.
    pub fn stored(&self) -> (VersionSource, Option<String>) {
        match self {
            PluginSource::Bundled => (VersionSource::Bundled, None),
            PluginSource::File(p) => (VersionSource::File, Some(p.display().to_string())),
            PluginSource::Api => (VersionSource::Api, None),
        }
    }
}

/// The plugin serving one shop's step.
pub struct ActivePlugin {
    pub plugin: Plugin,
    pub source: PluginSource,
    pub config_json: String,
    pub loaded_at_ms: i64,
    /// Version number within the shop's step.
    pub version: u64,
    pub calls: AtomicU64,
    pub errors: AtomicU64,
    /// Calls and errors of the last hour, by minute.
    pub recent: super::recent::Recent,
    /// Kept instances, when the step reuses them.
    pub pool: Option<ReusePool>,
    /// Until when (unix ms) calls go straight to the slow lane, after a
    /// call that used up its inline CPU budget (see `placement`).
    pub slow_until_ms: AtomicI64,
    /// The step's call metrics, looked up on the first call.
    pub metrics: OnceLock<CallMetrics>,
}

/// One shop step's call metrics. Looking them up by their labels on every
/// call (two label strings, a hash and a registry lookup each) cost some
/// 2% of the server's CPU under load; the handles are kept instead.
pub struct CallMetrics {
    pub ok: metrics::Counter,
    pub failed: metrics::Counter,
    /// The same calls by version (a canary's and the stable one's apart).
    pub version_ok: metrics::Counter,
    pub version_failed: metrics::Counter,
    pub duration: metrics::Histogram,
}

impl CallMetrics {
    fn register(shop: &str, step: Step, version: u64) -> Self {
        let calls = |outcome: &'static str| metrics::counter!("kefu_calls_total", "shop" => shop.to_string(), "step" => step.world(), "outcome" => outcome);
        let by_version = |outcome: &'static str| metrics::counter!("kefu_version_calls_total", "shop" => shop.to_string(), "step" => step.world(), "version" => version.to_string(), "outcome" => outcome);
        CallMetrics {
            ok: calls("ok"),
            failed: calls("error"),
            version_ok: by_version("ok"),
            version_failed: by_version("error"),
            duration: metrics::histogram!("kefu_call_duration_seconds", "shop" => shop.to_string(), "step" => step.world()),
        }
    }
}

impl ActivePlugin {
    /// Count one call of `shop`'s `step`, in the listing and the metrics.
    pub fn count(&self, shop: &str, step: Step, ok: bool, duration: std::time::Duration) {
        let metrics = self
            .metrics
            .get_or_init(|| CallMetrics::register(shop, step, self.version));
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.recent.count(now_ms() / 1000, ok);
        metrics.duration.record(duration.as_secs_f64());
        if ok {
            metrics.ok.increment(1);
            metrics.version_ok.increment(1);
        } else {
            self.errors.fetch_add(1, Ordering::Relaxed);
            metrics.failed.increment(1);
            metrics.version_failed.increment(1);
        }
    }
}

/// A shop ready to serve.
#[derive(Clone)]
pub struct Shop {
    pub id: String,
    pub name: String,
    pub dir: PathBuf,
    pub key_sha256: Option<[u8; 32]>,
    /// Where due revisits are POSTed, if anywhere, and the signing secret.
    pub webhook: Option<super::config::Webhook>,
    pub steps: HashMap<Step, Arc<ActivePlugin>>,
    /// Canaries running, by step.
    pub canaries: HashMap<Step, Arc<Canary>>,
    /// Shadow runs, by step (not kept across a restart).
    pub shadows: HashMap<Step, Arc<Shadow>>,
    /// The version before each step's active one, when the step falls
    /// back to it (`on_failure`).
    pub previous: HashMap<Step, Arc<ActivePlugin>>,
    /// Each step's fallback and canary thresholds (the defaults for a
    /// step not listed).
    pub policies: HashMap<Step, StepPolicy>,
    /// Steps whose plugin could not be loaded, with the reason.
    pub unavailable: BTreeMap<Step, String>,
    /// Why the shop's folder does not load, while it serves what it
    /// served before (or, never loaded, nothing).
    pub degraded: Option<String>,
}

impl Shop {
    /// How `step` falls back and is analysed.
    pub fn policy(&self, step: Step) -> &StepPolicy {
        static DEFAULT: OnceLock<StepPolicy> = OnceLock::new();
        self.policies
            .get(&step)
            .unwrap_or_else(|| DEFAULT.get_or_init(StepPolicy::default))
    }

    /// Why `step` cannot be served, if it cannot. A step whose new version
    /// was refused keeps serving the old one, so it is not unavailable.
    pub fn unavailable_reason(&self, step: Step) -> Option<&str> {
        if self.steps.contains_key(&step) {
            return None;
        }
        self.unavailable.get(&step).map(String::as_str)
    }
}

/// Something that could not be loaded, kept for the plugin listing.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LoadFailure {
    pub shop: String,
    #[schema(value_type = Option<String>)]
    pub step: Option<Step>,
    pub reason: String,
    pub at_ms: i64,
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// All shops, swapped as a whole.
pub struct Registry {
    shops: ArcSwap<HashMap<String, Arc<Shop>>>,
    /// Failures standing, each with its sequence number: a failure stands
    /// until its shop is loaded again or its step is deployed or rolled
    /// back (see [`Registry::settle`], [`Registry::resolve`]).
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    next: u64,
    list: Vec<(u64, LoadFailure)>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<Shop>> {
        self.shops.load().get(id).cloned()
    }

    pub fn all(&self) -> Arc<HashMap<String, Arc<Shop>>> {
        self.shops.load_full()
    }

    fn failures_mut(&self) -> std::sync::MutexGuard<'_, Failures> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failures standing, oldest first.
    pub fn failures(&self) -> Vec<LoadFailure> {
        self.failures_mut()
            .list
            .iter()
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// How many load failures stand, without copying them.
    pub fn failure_count(&self) -> usize {
        self.failures_mut().list.len()
    }

    pub fn fail(&self, shop: &str, step: Option<Step>, reason: String) {
        tracing::error!(shop, step = ?step, %reason, "cannot load");
        let mut failures = self.failures_mut();
        let seq = failures.next;
        failures.next += 1;
        failures.list.push((
            seq,
            LoadFailure {
                shop: shop.to_string(),
                step,
                reason,
                at_ms: now_ms(),
            },
        ));
        let excess = failures.list.len().saturating_sub(1000);
        failures.list.drain(..excess);
    }

    /// A mark to [`Registry::settle`] a shop's failures with, taken before
    /// loading it again.
    pub fn mark(&self) -> u64 {
        self.failures_mut().next
    }

    /// Shop `shop` was loaded again since `mark`: its failures from
    /// before stand no more (those of this load stay).
    pub fn settle(&self, shop: &str, mark: u64) {
        self.failures_mut()
            .list
            .retain(|(seq, f)| *seq >= mark || f.shop != shop);
    }

    /// A version of `shop`'s `step` went live: that step's failures stand
    /// no more.
    pub fn resolve(&self, shop: &str, step: Step) {
        self.failures_mut()
            .list
            .retain(|(_, f)| f.shop != shop || f.step != Some(step));
    }

    /// Replace (or add) one shop; calls in flight keep the old one.
    pub fn put(&self, shop: Shop) {
        let shop = Arc::new(shop);
        self.shops.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.insert(shop.id.clone(), shop.clone());
            map
        });
    }

    /// Replace (or add) many shops at once: one copy of the map.
    pub fn put_all(&self, shops: Vec<Shop>) {
        if shops.is_empty() {
            return;
        }
        let shops: Vec<Arc<Shop>> = shops.into_iter().map(Arc::new).collect();
        self.shops.rcu(|map| {
            let mut map = HashMap::clone(map);
            map.reserve(shops.len());
            for shop in &shops {
                map.insert(shop.id.clone(), shop.clone());
            }
            map
        });
    }

    /// Stop serving a shop.
    pub fn remove(&self, id: &str) -> bool {
        let mut removed = false;
        self.shops.rcu(|map| {
            let mut map = HashMap::clone(map);
            removed = map.remove(id).is_some();
            map
        });
        removed
    }

    pub fn empty() -> Self {
        Registry {
            shops: ArcSwap::from_pointee(HashMap::new()),
            failures: Mutex::default(),
        }
    }
}
