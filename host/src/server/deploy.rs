//! Versions of each shop's steps: activating new ones (from files, the
//! API or the bundled defaults), restoring the active ones at startup and
//! rolling back. Everything is validated before it is swapped in; a
//! rejected component never replaces a working one.

use super::config::{ShopSpec, StepSpec};
use super::shops::{ActivePlugin, PluginSource, Registry, Shop, now_ms};
use crate::error::LoadError;
use crate::runtime::{Plugin, ReusePool, Runtime, digest, read_plugin};
use crate::step::Step;
use crate::storage::{AuditEvent, Storage, StorageError, VersionRecord};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};

/// Why a deploy or rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("no shop `{0}`")]
    UnknownShop(String),
    #[error("shop `{shop}` step `{step}` has no version {version}")]
    UnknownVersion {
        shop: String,
        step: Step,
        version: u64,
    },
    #[error("shop `{shop}` step `{step}` has no earlier version to roll back to")]
    NothingToRollBack { shop: String, step: Step },
    #[error("component rejected, the active version keeps serving: {0}")]
    Rejected(#[from] LoadError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a step should run according to the shop's folder.
struct Candidate {
    bytes: Cow<'static, [u8]>,
    digest: String,
    config_json: String,
    source: PluginSource,
    reuse: bool,
}

/// (digest, config, reuse): two versions with the same signature behave
/// alike.
type Signature = (String, String, bool);

fn signature_of(v: &VersionRecord) -> Signature {
    (v.digest.clone(), v.config_json.clone(), v.reuse)
}

pub struct Deployer {
    runtime: Arc<Runtime>,
    storage: Arc<dyn Storage>,
    registry: Arc<Registry>,
    /// One deploy at a time (file watcher and API alike).
    lock: Mutex<()>,
    /// The signature each step's files had when last looked at, so that a
    /// reload only redeploys steps whose files changed.
    seen: Mutex<HashMap<(String, Step), Signature>>,
}

fn source_name(source: &PluginSource) -> &'static str {
    match source {
        PluginSource::Bundled => "bundled",
        PluginSource::File(_) => "file",
        PluginSource::Api => "api",
    }
}

fn source_of(record: &VersionRecord) -> PluginSource {
    match (record.source.as_str(), &record.path) {
        ("file", Some(path)) => PluginSource::File(path.into()),
        ("api", _) => PluginSource::Api,
        _ => PluginSource::Bundled,
    }
}

impl Deployer {
    pub fn new(runtime: Arc<Runtime>, storage: Arc<dyn Storage>, registry: Arc<Registry>) -> Self {
        Deployer {
            runtime,
            storage,
            registry,
            lock: Mutex::new(()),
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Load every shop folder under `dir` (at startup).
    pub fn load_all(
        &self,
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("shop.toml").is_file())
            .collect();
        entries.sort();
        for path in entries {
            self.reload_shop(&path, env, "startup");
        }
        Ok(())
    }

    /// (Re)load one shop folder: after a change on disk, or at startup.
    /// Steps whose files did not change are left alone; a step whose new
    /// plugin or config is invalid keeps its active version.
    pub fn reload_shop(&self, dir: &Path, env: &dyn Fn(&str) -> Option<String>, actor: &str) {
        let _guard = self.guard();
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !dir.join("shop.toml").is_file() {
            if self.registry.remove(&id) {
                tracing::info!(shop = %id, "shop folder removed: no longer served");
                self.audit(
                    &id,
                    None,
                    "shop-removed",
                    None,
                    None,
                    "file",
                    actor,
                    "shop.toml is gone",
                );
            }
            return;
        }
        let spec = match ShopSpec::load(dir, env) {
            Ok(spec) => spec,
            Err(e) => {
                let kept = if self.registry.get(&id).is_some() {
                    "; the shop keeps its active versions"
                } else {
                    ""
                };
                self.reject(&id, None, format!("{e}{kept}"), actor);
                return;
            }
        };
        let current = self.registry.get(&spec.id);
        let mut steps = HashMap::new();
        let mut unavailable = BTreeMap::new();
        for step in Step::ALL {
            let active = current.as_ref().and_then(|s| s.steps.get(&step).cloned());
            match self.settle_step(&spec.id, step, spec.steps.get(&step), active, actor) {
                Ok(active) => {
                    steps.insert(step, active);
                }
                Err(reason) => {
                    unavailable.insert(step, reason);
                }
            }
        }
        if let Err(e) = self.storage.flush() {
            tracing::error!(error = %e, "cannot flush deploy records");
        }
        self.registry.put(Shop {
            id: spec.id,
            name: spec.name,
            dir: spec.dir,
            key_sha256: spec.key_sha256,
            revisit_webhook: spec.revisit_webhook,
            steps,
            unavailable,
        });
    }

    /// Decide what one step runs after a (re)load.
    fn settle_step(
        &self,
        shop: &str,
        step: Step,
        spec: Option<&StepSpec>,
        active: Option<Arc<ActivePlugin>>,
        actor: &str,
    ) -> Result<Arc<ActivePlugin>, String> {
        let candidate = self.candidate(step, spec);
        let history = self
            .storage
            .versions(shop, step)
            .map_err(|e| e.to_string())?;
        let key = (shop.to_string(), step);
        let restore = |this: &Self| -> Result<Arc<ActivePlugin>, String> {
            if let Some(active) = &active {
                return Ok(active.clone());
            }
            this.restore_active(shop, step, &history)?
                .ok_or_else(|| "no working version".to_string())
        };
        let candidate = match candidate {
            Ok(c) => c,
            Err(reason) => {
                self.reject(shop, Some(step), reason.clone(), actor);
                return restore(self).map_err(|_| reason);
            }
        };
        let signature = (
            candidate.digest.clone(),
            candidate.config_json.clone(),
            candidate.reuse,
        );
        let previous = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, signature.clone());
        let unchanged = match &previous {
            // Reload: only a change of the files counts.
            Some(prev) => prev == &signature,
            // First look (startup): if the folder says what it said when
            // a version was last taken from it, nothing changed while the
            // host was down and the stored active version stands (it may
            // be a rollback or an API deploy). If the folder changed (a
            // file written just before a crash, or while stopped), it
            // wins, even when it matches some older version.
            None => match history.iter().rev().find(|v| v.source != "api") {
                Some(from_folder) => signature_of(from_folder) == signature,
                None => history.iter().any(|v| signature_of(v) == signature),
            },
        };
        if unchanged && (active.is_some() || !history.is_empty()) {
            return restore(self);
        }
        match self.activate_new(shop, step, candidate, &history, actor) {
            Ok(active) => Ok(active),
            Err(e) => {
                self.reject(shop, Some(step), e.to_string(), actor);
                restore(self).map_err(|_| e.to_string())
            }
        }
    }

    /// What the shop folder says a step should run.
    fn candidate(&self, step: Step, spec: Option<&StepSpec>) -> Result<Candidate, String> {
        let config_json = spec.map_or_else(|| "{}".to_string(), |s| s.config_json.clone());
        let reuse = spec.is_some_and(|s| s.instances == super::config::InstanceMode::Reuse);
        Ok(match spec.and_then(|s| s.plugin.as_ref()) {
            Some(path) => {
                let bytes = read_plugin(path).map_err(|e| e.to_string())?;
                Candidate {
                    digest: digest(&bytes),
                    bytes: Cow::Owned(bytes),
                    config_json,
                    source: PluginSource::File(path.clone()),
                    reuse,
                }
            }
            None => Candidate {
                bytes: Cow::Borrowed(crate::default_plugin(step)),
                digest: crate::bundled::default_digest(step).to_string(),
                config_json,
                source: PluginSource::Bundled,
                reuse,
            },
        })
    }

    /// Build the active plugin of a stored version.
    fn restore_active(
        &self,
        shop: &str,
        step: Step,
        history: &[VersionRecord],
    ) -> Result<Option<Arc<ActivePlugin>>, String> {
        let Some(number) = self.storage.active(shop, step).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let record = history
            .iter()
            .find(|v| v.version == number)
            .ok_or_else(|| format!("active version {number} is not recorded"))?;
        let plugin = self.plugin_of(step, record).map_err(|e| e.to_string())?;
        Ok(Some(active_plugin(plugin, record)))
    }

    fn plugin_of(&self, step: Step, record: &VersionRecord) -> Result<Plugin, DeployError> {
        if let Some(plugin) = self.runtime.loaded(&record.digest, step) {
            return Ok(plugin);
        }
        let bytes = self.storage.blob(&record.digest)?.ok_or_else(|| {
            StorageError::Corrupt(format!("component {} is missing", record.digest))
        })?;
        Ok(self.runtime.load_known(&bytes, &record.digest, step)?)
    }

    /// Validate a candidate and make it the next version.
    fn activate_new(
        &self,
        shop: &str,
        step: Step,
        c: Candidate,
        history: &[VersionRecord],
        actor: &str,
    ) -> Result<Arc<ActivePlugin>, DeployError> {
        let plugin = self.runtime.load_known(&c.bytes, &c.digest, step)?;
        self.storage.put_blob(&c.digest, &c.bytes)?;
        let record = VersionRecord {
            version: history.last().map_or(1, |v| v.version + 1),
            digest: c.digest,
            config_json: c.config_json,
            source: source_name(&c.source).into(),
            path: match &c.source {
                PluginSource::File(p) => Some(p.display().to_string()),
                _ => None,
            },
            reuse: c.reuse,
            actor: actor.into(),
            at_ms: now_ms(),
        };
        self.storage.put_version(shop, step, &record)?;
        self.storage.set_active(shop, step, record.version)?;
        self.audit(
            shop,
            Some(step),
            "activated",
            Some(record.version),
            Some(&record.digest),
            &record.source,
            actor,
            "",
        );
        metrics::counter!("kefu_deploys_total", "shop" => shop.to_string(), "outcome" => "activated").increment(1);
        tracing::info!(shop, step = %step, version = record.version, digest = %record.digest, source = %record.source, "activated");
        Ok(active_plugin(plugin, &record))
    }

    /// Swap one step of a running shop.
    fn swap(&self, shop: &Shop, step: Step, active: Arc<ActivePlugin>) -> Result<(), DeployError> {
        self.storage.flush()?;
        let mut next = shop.clone();
        next.steps.insert(step, active);
        next.unavailable.remove(&step);
        self.registry.put(next);
        Ok(())
    }

    /// A shop being served, or the error naming it.
    fn running_shop(&self, shop_id: &str) -> Result<Arc<Shop>, DeployError> {
        self.registry
            .get(shop_id)
            .ok_or_else(|| DeployError::UnknownShop(shop_id.into()))
    }

    /// Deploy an uploaded component as the next version of a shop's step,
    /// keeping the step's current config.
    pub fn deploy_api(
        &self,
        shop_id: &str,
        step: Step,
        bytes: Vec<u8>,
        actor: &str,
    ) -> Result<VersionRecord, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        let config_json = shop
            .steps
            .get(&step)
            .map_or_else(|| "{}".to_string(), |a| a.config_json.clone());
        let reuse = shop.steps.get(&step).is_some_and(|a| a.pool.is_some());
        let history = self.storage.versions(shop_id, step)?;
        let candidate = Candidate {
            digest: digest(&bytes),
            bytes: Cow::Owned(bytes),
            config_json,
            source: PluginSource::Api,
            reuse,
        };
        let active = match self.activate_new(shop_id, step, candidate, &history, actor) {
            Ok(active) => active,
            Err(e) => {
                self.reject(shop_id, Some(step), e.to_string(), actor);
                return Err(e);
            }
        };
        self.swap(&shop, step, active)?;
        let history = self.storage.versions(shop_id, step)?;
        Ok(history.last().cloned().expect("just recorded"))
    }

    /// Make an earlier version active again: `to`, or the one before the
    /// active one.
    pub fn rollback(
        &self,
        shop_id: &str,
        step: Step,
        to: Option<u64>,
        actor: &str,
    ) -> Result<VersionRecord, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        let history = self.storage.versions(shop_id, step)?;
        let current = self.storage.active(shop_id, step)?;
        let target = match to {
            Some(v) => {
                history
                    .iter()
                    .find(|r| r.version == v)
                    .ok_or(DeployError::UnknownVersion {
                        shop: shop_id.into(),
                        step,
                        version: v,
                    })?
            }
            None => history
                .iter()
                .rev()
                .find(|r| Some(r.version) < current)
                .ok_or(DeployError::NothingToRollBack {
                    shop: shop_id.into(),
                    step,
                })?,
        };
        let plugin = self.plugin_of(step, target)?;
        self.storage.set_active(shop_id, step, target.version)?;
        let reason = format!(
            "from version {}",
            current.map_or("none".into(), |c| c.to_string())
        );
        self.audit(
            shop_id,
            Some(step),
            "rolled-back",
            Some(target.version),
            Some(&target.digest),
            "api",
            actor,
            &reason,
        );
        self.swap(&shop, step, active_plugin(plugin, target))?;
        tracing::info!(shop = shop_id, step = %step, version = target.version, "rolled back");
        Ok(target.clone())
    }

    /// Report a rejected deploy: log, metric, failure list and audit.
    fn reject(&self, shop: &str, step: Option<Step>, reason: String, actor: &str) {
        metrics::counter!("kefu_deploys_total", "shop" => shop.to_string(), "outcome" => "rejected").increment(1);
        self.audit(
            shop,
            step,
            "rejected",
            None,
            None,
            if actor == "admin" { "api" } else { "file" },
            actor,
            &reason,
        );
        self.registry.fail(shop, step, reason);
    }

    #[allow(clippy::too_many_arguments)]
    fn audit(
        &self,
        shop: &str,
        step: Option<Step>,
        action: &str,
        version: Option<u64>,
        digest: Option<&str>,
        source: &str,
        actor: &str,
        reason: &str,
    ) {
        let event = self.storage.next_id().map(|id| AuditEvent {
            id,
            at_ms: now_ms(),
            shop: shop.into(),
            step,
            action: action.into(),
            version,
            digest: digest.map(Into::into),
            source: source.into(),
            actor: actor.into(),
            reason: reason.into(),
        });
        if let Err(e) = event.and_then(|e| self.storage.append_audit(&e)) {
            tracing::error!(error = %e, "cannot write the deploy audit");
        }
    }
}

fn active_plugin(plugin: Plugin, record: &VersionRecord) -> Arc<ActivePlugin> {
    Arc::new(ActivePlugin {
        pool: record.reuse.then(|| ReusePool::new(plugin.clone())),
        plugin,
        source: source_of(record),
        config_json: record.config_json.clone(),
        loaded_at_ms: now_ms(),
        version: record.version,
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        slow_until_ms: AtomicI64::new(0),
    })
}
