//! Versions of each shop's steps: activating new ones (from files, the
//! API or the bundled defaults), restoring the active ones at startup and
//! rolling back. Everything is validated before it is swapped in; a
//! rejected component never replaces a working one.

mod api;
mod canary;
mod folder;
mod follow;
mod retention;
mod shadow;

pub use api::DeployRequest;
pub use canary::{CanaryPlan, CanaryView};

use super::Env;
use super::registry::{ActivePlugin, PluginSource, Registry, Shop, now_ms};
use super::rollout::{OnFailure, StepPolicy};
use crate::error::{CallError, LoadError};
use crate::runtime::{CallContext, Plugin, ReusePool, Runtime};
use crate::state::MemoryStateStore;
use crate::steps::Step;
use crate::storage::{
    Actor, AuditAction, AuditEvent, Storage, StorageError, VersionRecord, VersionSource,
};
use std::borrow::Cow;
use std::collections::HashMap;
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
    /// The new version failed on the step's sample input, with its config.
    #[error(
        "version refused before serving, the active version keeps serving: on the {step} sample input it answered: {reason}"
    )]
    TrialFailed { step: Step, reason: String },
    /// A config-only deploy of a step that has no version to take the
    /// component from.
    #[error("step `{step}` has no active version: send a component")]
    NoComponent { step: Step },
    #[error("invalid canary: {0}")]
    InvalidCanary(String),
    /// A deploy, rollback or other canary while one runs.
    #[error(
        "a canary of version {version} runs on shop `{shop}` step `{step}`: promote or abort it first"
    )]
    CanaryRunning {
        shop: String,
        step: Step,
        version: u64,
    },
    #[error("shop `{shop}` step `{step}` has no canary running")]
    NoCanary { shop: String, step: Step },
    #[error(
        "a shadow of {candidate} runs on shop `{shop}` step `{step}`: stop it first (DELETE .../shadow)"
    )]
    ShadowRunning {
        shop: String,
        step: Step,
        candidate: String,
    },
    #[error("shop `{shop}` step `{step}` has no shadow running")]
    NoShadow { shop: String, step: Step },
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

/// A folder canary table as last seen: its version's signature and plan.
type SeenCanary = (Signature, CanaryPlan);

fn signature_of(v: &VersionRecord) -> Signature {
    (v.digest.clone(), v.config_json.clone(), v.reuse)
}

pub struct Deployer {
    runtime: Arc<Runtime>,
    storage: Arc<dyn Storage>,
    registry: Arc<Registry>,
    /// Looks up shop keys named in `shop.toml`.
    env: Env,
    /// One deploy at a time (file watcher and API alike).
    lock: Mutex<()>,
    /// The signature each step's files had when last looked at, so that a
    /// reload only redeploys steps whose files changed.
    seen: Mutex<HashMap<(String, Step), Signature>>,
    /// What each step's `canary` table in its folder said when last looked
    /// at (`None`: no table), so that only a change starts or ends one.
    seen_canary: Mutex<HashMap<(String, Step), Option<SeenCanary>>>,
    /// (step, digest, config) whose trial passed: a thousand shops on the
    /// same default and config are tried once.
    tried: Mutex<std::collections::HashSet<(Step, String, String)>>,
    /// Each step's bundled default plugin as a fallback, loaded on first
    /// need.
    bundled: [std::sync::OnceLock<Option<Arc<ActivePlugin>>>; Step::ALL.len()],
    /// Versions kept per shop step (0: all), see `retention`.
    keep_versions: usize,
    /// Shops loaded at start, published together (see `folder`).
    pending: Mutex<Option<Vec<Shop>>>,
}

impl Deployer {
    pub fn new(
        runtime: Arc<Runtime>,
        storage: Arc<dyn Storage>,
        registry: Arc<Registry>,
        env: Env,
        keep_versions: usize,
    ) -> Self {
        Deployer {
            keep_versions,
            pending: Mutex::new(None),
            runtime,
            storage,
            registry,
            env,
            lock: Mutex::new(()),
            seen: Mutex::new(HashMap::new()),
            seen_canary: Mutex::new(HashMap::new()),
            tried: Mutex::new(Default::default()),
            bundled: Default::default(),
        }
    }

    /// The bundled default plugin of `step` with an empty config, the last
    /// fallback of a step with `on_failure = "default"` (blocking the
    /// first time: it loads).
    pub fn bundled(&self, step: Step) -> Option<Arc<ActivePlugin>> {
        self.bundled[step as usize]
            .get_or_init(|| {
                let digest = folder::default_digest(step);
                let plugin = match self.runtime.loaded(digest, step) {
                    Some(plugin) => plugin,
                    None => match self.runtime.load_known(step.default_plugin(), digest, step) {
                        Ok(plugin) => plugin,
                        Err(e) => {
                            tracing::error!(step = %step, error = %e, "cannot load the bundled plugin as a fallback");
                            return None;
                        }
                    },
                };
                let record = VersionRecord {
                    version: 0,
                    digest: digest.to_string(),
                    config_json: "{}".into(),
                    source: VersionSource::Bundled,
                    path: None,
                    reuse: false,
                    actor: Actor::Startup,
                    at_ms: now_ms(),
                    canary: false,
                };
                Some(active_plugin(plugin, &record))
            })
            .clone()
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn plugin_of(
        &self,
        step: Step,
        record: &VersionRecord,
    ) -> Result<Plugin, DeployError> {
        if let Some(plugin) = self.runtime.loaded(&record.digest, step) {
            return Ok(plugin);
        }
        let bytes = self.storage.version_component(&record.digest)?;
        Ok(self.runtime.load_known(&bytes, &record.digest, step)?)
    }

    /// Validate a candidate and make it the next version.
    fn activate_new(
        &self,
        shop: &str,
        step: Step,
        c: Candidate,
        history: &[VersionRecord],
        actor: Actor,
    ) -> Result<Arc<ActivePlugin>, DeployError> {
        let (plugin, record) = self.record_new(shop, step, c, history, actor, false)?;
        self.storage.set_active(shop, step, record.version)?;
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(record.version),
            digest: Some(record.digest.clone()),
            ..self.event(shop, AuditAction::Activated, record.source, actor, "")
        });
        metrics::counter!("kefu_deploys_total", "shop" => shop.to_string(), "outcome" => "activated").increment(1);
        tracing::info!(shop, step = %step, version = record.version, digest = %record.digest, source = %record.source, "activated");
        Ok(active_plugin(plugin, &record))
    }

    /// Validate a candidate and record it as the next version, not yet
    /// serving.
    fn record_new(
        &self,
        shop: &str,
        step: Step,
        c: Candidate,
        history: &[VersionRecord],
        actor: Actor,
        canary: bool,
    ) -> Result<(Plugin, VersionRecord), DeployError> {
        let plugin = self.runtime.load_known(&c.bytes, &c.digest, step)?;
        self.trial(step, &plugin, &c.config_json)?;
        self.storage.put_component(&c.digest, &c.bytes)?;
        let (source, path) = c.source.stored();
        let record = VersionRecord {
            version: history.last().map_or(1, |v| v.version + 1),
            digest: c.digest,
            config_json: c.config_json,
            source,
            path,
            reuse: c.reuse,
            actor,
            at_ms: now_ms(),
            canary,
        };
        self.storage.put_version(shop, step, &record)?;
        Ok((plugin, record))
    }

    /// Try a candidate (component and config together) on the step's
    /// sample input, with state of its own, before it serves. A plugin
    /// that reports an error there (a config key it does not know, say)
    /// or answers what the host refuses is refused; a slow or trapping one
    /// is not judged here (its calls are, with their own errors).
    fn trial(&self, step: Step, plugin: &Plugin, config_json: &str) -> Result<(), DeployError> {
        let key = (step, plugin.digest().to_string(), config_json.to_string());
        if self
            .tried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
        {
            return Ok(());
        }
        let ctx = CallContext {
            shop: "trial".into(),
            plugin: step.world().to_string(),
            config_json: config_json.to_string(),
            now: chrono::Utc::now().timestamp(),
            state: Arc::new(MemoryStateStore::default()),
        };
        match plugin.call(&self.runtime, ctx, &step.sample()).result {
            Err(e @ (CallError::Plugin(_) | CallError::InvalidOutput(_))) => {
                Err(DeployError::TrialFailed {
                    step,
                    reason: e.to_string(),
                })
            }
            _ => {
                self.tried
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key);
                Ok(())
            }
        }
    }

    /// Swap one step of a running shop, with the version it falls back
    /// to.
    fn swap(&self, shop: &Shop, step: Step, active: Arc<ActivePlugin>) -> Result<(), DeployError> {
        self.storage.flush()?;
        let history = self.storage.versions(&shop.id, step)?;
        let mut next = shop.clone();
        match self.previous_of(&shop.id, step, &active, &history, shop.policy(step)) {
            Some(previous) => next.previous.insert(step, previous),
            None => next.previous.remove(&step),
        };
        next.steps.insert(step, active);
        next.unavailable.remove(&step);
        self.registry.put(next);
        Ok(())
    }

    /// The version `active` falls back to (see `rollout::OnFailure`): the
    /// newest earlier version that differs from it, loaded; none when the
    /// step answers its errors.
    fn previous_of(
        &self,
        shop: &str,
        step: Step,
        active: &ActivePlugin,
        history: &[VersionRecord],
        policy: &StepPolicy,
    ) -> Option<Arc<ActivePlugin>> {
        if policy.on_failure == OnFailure::Error {
            return None;
        }
        let record = history.iter().rev().find(|v| {
            v.version < active.version
                && (v.digest != active.plugin.digest() || v.config_json != active.config_json)
        })?;
        match self.plugin_of(step, record) {
            Ok(plugin) => Some(active_plugin(plugin, record)),
            Err(e) => {
                tracing::warn!(shop, step = %step, version = record.version, error = %e, "the previous version cannot be loaded: no fallback to it");
                None
            }
        }
    }

    /// Refuse to change a step's stable version while a canary runs.
    fn no_canary(&self, shop: &Shop, step: Step) -> Result<(), DeployError> {
        match shop.canaries.get(&step) {
            Some(c) => Err(DeployError::CanaryRunning {
                shop: shop.id.clone(),
                step,
                version: c.record.version,
            }),
            None => Ok(()),
        }
    }

    /// A shop being served, or the error naming it.
    fn running_shop(&self, shop_id: &str) -> Result<Arc<Shop>, DeployError> {
        self.registry
            .get(shop_id)
            .ok_or_else(|| DeployError::UnknownShop(shop_id.into()))
    }

    /// Report a rejected deploy: log, metric, failure list and audit.
    fn reject(&self, shop: &str, step: Option<Step>, reason: String, actor: Actor) {
        metrics::counter!("kefu_deploys_total", "shop" => shop.to_string(), "outcome" => "rejected").increment(1);
        let source = match actor {
            Actor::Admin | Actor::ConsoleAdmin => VersionSource::Api,
            _ => VersionSource::File,
        };
        self.audit(AuditEvent {
            step,
            ..self.event(shop, AuditAction::Rejected, source, actor, &reason)
        });
        self.registry.fail(shop, step, reason);
    }

    /// An audit event of `shop` now, with no step, version or digest.
    pub(crate) fn event(
        &self,
        shop: &str,
        action: AuditAction,
        source: VersionSource,
        actor: Actor,
        reason: &str,
    ) -> AuditEvent {
        AuditEvent {
            id: 0,
            at_ms: now_ms(),
            shop: shop.into(),
            step: None,
            action,
            version: None,
            digest: None,
            source,
            actor,
            reason: reason.into(),
        }
    }

    /// Append `event` to the audit under a new id; a failure is logged,
    /// never fatal to the deploy it describes.
    pub(crate) fn audit(&self, mut event: AuditEvent) {
        let written = self.storage.next_id().and_then(|id| {
            event.id = id;
            self.storage.append_audit(&event)
        });
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the deploy audit");
        }
    }
}

fn active_plugin(plugin: Plugin, record: &VersionRecord) -> Arc<ActivePlugin> {
    Arc::new(ActivePlugin {
        pool: record.reuse.then(|| ReusePool::new(plugin.clone())),
        plugin,
        source: PluginSource::of(record),
        config_json: record.config_json.clone(),
        loaded_at_ms: now_ms(),
        version: record.version,
        calls: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        recent: Default::default(),
        slow_until_ms: AtomicI64::new(0),
        metrics: Default::default(),
    })
}
