//! The shops being served and the plugin active for each of their steps.
//! The whole map is swapped atomically, so a call always sees one
//! consistent version of a shop.

use super::config::{ShopSpec, StepSpec};
use crate::runtime::{Plugin, Runtime};
use crate::step::Step;
use arc_swap::ArcSwap;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Where an active plugin came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "path")]
pub enum PluginSource {
    /// The default plugin bundled in the binary.
    Bundled,
    /// A file in the shop's folder.
    File(PathBuf),
    /// Uploaded through the admin API.
    Api,
}

/// The plugin serving one shop's step.
pub struct ActivePlugin {
    pub plugin: Plugin,
    pub source: PluginSource,
    pub config_json: String,
    pub loaded_at_ms: i64,
    /// Version number within the shop's step; 0 for the bundled plugin.
    pub version: u64,
    pub calls: AtomicU64,
    pub errors: AtomicU64,
}

impl ActivePlugin {
    pub fn count(&self, ok: bool) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A shop ready to serve.
pub struct Shop {
    pub id: String,
    pub name: String,
    pub dir: PathBuf,
    pub key_sha256: Option<[u8; 32]>,
    pub steps: HashMap<Step, Arc<ActivePlugin>>,
    /// Steps whose plugin could not be loaded, with the reason.
    pub unavailable: BTreeMap<Step, String>,
}

/// Something that could not be loaded, kept for `GET /v1/plugins`.
#[derive(Clone, Debug, Serialize)]
pub struct LoadFailure {
    pub shop: String,
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
    failures: Mutex<Vec<LoadFailure>>,
}

impl Registry {
    pub fn get(&self, id: &str) -> Option<Arc<Shop>> {
        self.shops.load().get(id).cloned()
    }

    pub fn all(&self) -> Arc<HashMap<String, Arc<Shop>>> {
        self.shops.load_full()
    }

    pub fn failures(&self) -> Vec<LoadFailure> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fail(&self, shop: &str, step: Option<Step>, reason: String) {
        tracing::error!(shop, step = ?step, %reason, "cannot load");
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.push(LoadFailure {
            shop: shop.to_string(),
            step,
            reason,
            at_ms: now_ms(),
        });
        let excess = failures.len().saturating_sub(1000);
        failures.drain(..excess);
    }

    /// Load every shop folder under `dir`. A shop or step that cannot be
    /// loaded is reported and skipped; the others are served.
    pub fn load_all(
        runtime: &Runtime,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> std::io::Result<Self> {
        let registry = Registry {
            shops: ArcSwap::from_pointee(HashMap::new()),
            failures: Mutex::new(Vec::new()),
        };
        let mut loader = Loader::new(runtime);
        let mut shops = HashMap::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("shop.toml").is_file())
            .collect();
        entries.sort();
        for path in entries {
            match ShopSpec::load(&path, env) {
                Ok(spec) => {
                    let shop = loader.shop(spec, &registry);
                    shops.insert(shop.id.clone(), Arc::new(shop));
                }
                Err(e) => {
                    let id = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    registry.fail(&id, None, e.to_string());
                }
            }
        }
        registry.shops.store(Arc::new(shops));
        Ok(registry)
    }
}

/// Loads plugins, sharing each bundled plugin between all shops.
struct Loader<'a> {
    runtime: &'a Runtime,
    bundled: HashMap<Step, Plugin>,
}

impl<'a> Loader<'a> {
    fn new(runtime: &'a Runtime) -> Self {
        Loader {
            runtime,
            bundled: HashMap::new(),
        }
    }

    fn plugin(
        &mut self,
        step: Step,
        spec: Option<&StepSpec>,
    ) -> Result<(Plugin, PluginSource), String> {
        match spec.and_then(|s| s.plugin.as_ref()) {
            Some(path) => self
                .runtime
                .load_file(path, step)
                .map(|p| (p, PluginSource::File(path.clone())))
                .map_err(|e| e.to_string()),
            None => {
                if let Some(p) = self.bundled.get(&step) {
                    return Ok((p.clone(), PluginSource::Bundled));
                }
                let plugin = self
                    .runtime
                    .load(crate::default_plugin(step), step)
                    .map_err(|e| e.to_string())?;
                self.bundled.insert(step, plugin.clone());
                Ok((plugin, PluginSource::Bundled))
            }
        }
    }

    fn shop(&mut self, spec: ShopSpec, registry: &Registry) -> Shop {
        let mut steps = HashMap::new();
        let mut unavailable = BTreeMap::new();
        for step in Step::ALL {
            let step_spec = spec.steps.get(&step);
            match self.plugin(step, step_spec) {
                Ok((plugin, source)) => {
                    let version = if source == PluginSource::Bundled {
                        0
                    } else {
                        1
                    };
                    steps.insert(
                        step,
                        Arc::new(ActivePlugin {
                            plugin,
                            source,
                            config_json: step_spec
                                .map_or_else(|| "{}".to_string(), |s| s.config_json.clone()),
                            loaded_at_ms: now_ms(),
                            version,
                            calls: AtomicU64::new(0),
                            errors: AtomicU64::new(0),
                        }),
                    );
                }
                Err(reason) => {
                    registry.fail(&spec.id, Some(step), reason.clone());
                    unavailable.insert(step, reason);
                }
            }
        }
        Shop {
            id: spec.id,
            name: spec.name,
            dir: spec.dir,
            key_sha256: spec.key_sha256,
            steps,
            unavailable,
        }
    }
}
