//! What the application shows of its plugins and versions: response types
//! apart from the stored records.

use super::App;
use super::DeployError;
use super::registry::{LoadFailure, PluginSource};
use crate::steps::Step;
use crate::storage::{Actor, VersionRecord, VersionSource};
use serde::Serialize;
use std::sync::atomic::Ordering;

/// One shop step in the plugin listing.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ActivePluginView {
    /// Serving a plugin.
    Active {
        shop: String,
        #[schema(value_type = String)]
        step: Step,
        digest: String,
        version: u64,
        source: PluginSource,
        /// "fresh" (an instance per call) or "reuse".
        instances: &'static str,
        loaded_at_ms: i64,
        calls: u64,
        errors: u64,
        /// The step's canary, when one runs.
        #[serde(skip_serializing_if = "Option::is_none")]
        canary: Option<CanarySummary>,
    },
    /// No working plugin: why.
    Unavailable {
        shop: String,
        #[schema(value_type = String)]
        step: Step,
        reason: String,
    },
}

/// A running canary in the plugin listing (details: `GET .../canary`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CanarySummary {
    pub version: u64,
    pub percent: f64,
    pub calls: u64,
    pub errors: u64,
}

/// `GET /v1/plugins`: every shop step, and what failed to load.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PluginsView {
    pub plugins: Vec<ActivePluginView>,
    pub failures: Vec<LoadFailure>,
    /// Shops whose folder does not load, serving their stored versions.
    pub degraded: Vec<DegradedShop>,
    /// Components compiled since start (not found in the disk cache).
    pub compilations: u64,
    /// Compiles running now in the compile lane (idle priority)...
    pub compiles_running: usize,
    /// ...and waiting for a slot.
    pub compiles_queued: usize,
}

/// A shop serving while its `shop.toml` does not load.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DegradedShop {
    pub shop: String,
    /// Why its folder does not load.
    pub reason: String,
}

/// A version of a shop's step as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub version: u64,
    pub digest: String,
    #[schema(value_type = String)]
    pub source: VersionSource,
    pub path: Option<String>,
    pub reuse: bool,
    #[schema(value_type = String)]
    pub actor: Actor,
    pub at_ms: i64,
    /// "active", "canary" (serving a share of customers) or "inactive".
    pub status: &'static str,
    /// The plugin config (JSON) this version runs with.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    /// What changed from the version before it (`key: old → new`, `+ key:
    /// value`, `- key`, `component: <digest> → <digest>`); empty for the
    /// first.
    pub changes: Vec<String>,
}

impl VersionView {
    fn of(v: &VersionRecord, status: &'static str) -> Self {
        VersionView {
            version: v.version,
            digest: v.digest.clone(),
            source: v.source,
            path: v.path.clone(),
            reuse: v.reuse,
            actor: v.actor,
            at_ms: v.at_ms,
            status,
            config: serde_json::from_str(&v.config_json)
                .unwrap_or(serde_json::Value::String(v.config_json.clone())),
            changes: Vec::new(),
        }
    }

    /// The version just made active.
    pub fn active(v: &VersionRecord) -> Self {
        Self::of(v, "active")
    }

    /// A version just made the canary.
    pub fn canary(v: &VersionRecord) -> Self {
        Self::of(v, "canary")
    }
}

/// `GET .../steps/{step}/versions`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionsView {
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Step,
    pub active: Option<u64>,
    pub versions: Vec<VersionView>,
}

impl App {
    /// Every shop step: its active plugin or why it has none.
    pub fn plugins(&self) -> PluginsView {
        let shops = self.registry.all();
        let mut ids: Vec<&String> = shops.keys().collect();
        ids.sort();
        let mut plugins = Vec::new();
        for id in ids {
            let shop = &shops[id];
            for step in Step::ALL {
                if let Some(active) = shop.steps.get(&step) {
                    plugins.push(ActivePluginView::Active {
                        shop: shop.id.clone(),
                        step,
                        digest: active.plugin.digest().to_string(),
                        version: active.version,
                        source: active.source.clone(),
                        instances: if active.pool.is_some() {
                            "reuse"
                        } else {
                            "fresh"
                        },
                        loaded_at_ms: active.loaded_at_ms,
                        calls: active.calls.load(Ordering::Relaxed),
                        errors: active.errors.load(Ordering::Relaxed),
                        canary: shop.canaries.get(&step).map(|c| CanarySummary {
                            version: c.record.version,
                            percent: c.record.percent,
                            calls: c.plugin.calls.load(Ordering::Relaxed),
                            errors: c.plugin.errors.load(Ordering::Relaxed),
                        }),
                    });
                } else if let Some(reason) = shop.unavailable_reason(step) {
                    plugins.push(ActivePluginView::Unavailable {
                        shop: shop.id.clone(),
                        step,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        let (compiles_running, compiles_queued) = self.runtime.compiles();
        PluginsView {
            plugins,
            failures: self.registry.failures(),
            degraded: self
                .degraded_shops()
                .into_iter()
                .map(|(shop, reason)| DegradedShop { shop, reason })
                .collect(),
            compilations: self.runtime.compilations(),
            compiles_running,
            compiles_queued,
        }
    }

    /// The versions of a served shop's step, oldest first.
    pub fn versions(&self, shop: &str, step: Step) -> Result<VersionsView, DeployError> {
        if self.registry.get(shop).is_none() {
            return Err(DeployError::UnknownShop(shop.to_string()));
        }
        let active = self.storage.active(shop, step)?;
        let canary = self.storage.canary(shop, step)?.map(|c| c.version);
        let history = self.storage.versions(shop, step)?;
        let versions = history
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let status = match Some(v.version) {
                    n if n == active => "active",
                    n if n == canary => "canary",
                    _ => "inactive",
                };
                let mut view = VersionView::of(v, status);
                if let Some(before) = i.checked_sub(1).map(|j| &history[j]) {
                    view.changes = changes(before, v);
                }
                view
            })
            .collect();
        Ok(VersionsView {
            shop: shop.to_string(),
            step,
            active,
            versions,
        })
    }
}

/// What changed from version `a` to version `b`: the component, then each
/// config key (dotted paths for nested tables) added, removed or changed.
fn changes(a: &VersionRecord, b: &VersionRecord) -> Vec<String> {
    let mut out = Vec::new();
    if a.digest != b.digest {
        out.push(format!(
            "component: {} → {}",
            &a.digest[..12.min(a.digest.len())],
            &b.digest[..12.min(b.digest.len())]
        ));
    }
    let parse = |text: &str| serde_json::from_str(text).unwrap_or(serde_json::Value::Null);
    let (old, new) = (parse(&a.config_json), parse(&b.config_json));
    for path in crate::app::replay::changed_paths(&old, &new) {
        let at = |v: &serde_json::Value| path.split('.').try_fold(v, |v, key| v.get(key)).cloned();
        out.push(match (at(&old), at(&new)) {
            (None, Some(n)) => format!("+ {path}: {n}"),
            (Some(_), None) => format!("- {path}"),
            (Some(o), Some(n)) => format!("{path}: {o} → {n}"),
            (None, None) => path,
        });
    }
    out
}
