//! Deploys from the shop folders: every shop at startup, and one shop
//! after its files change. Only steps whose files changed get a new
//! version; the stored active versions stand otherwise.

use super::{Candidate, Deployer, active_plugin, signature_of};
use crate::app::config::{InstanceMode, ShopSpec, StepSpec, parse_sha256, webhook_of};
use crate::app::registry::{ActivePlugin, PluginSource, Shop};
use crate::app::rollout::{Canary, StepPolicy};
use crate::app::startup::Progress;
use crate::runtime::{digest, read_plugin};
use crate::steps::Step;
use crate::storage::{Actor, AuditAction, VersionRecord, VersionSource};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

impl Deployer {
    /// Load every shop folder under `dir` (at startup).
    /// `progress` hears of each one.
    pub fn load_all(&self, dir: &Path, progress: &Progress) -> std::io::Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("shop.toml").is_file())
            .collect();
        entries.sort();
        progress.begin(entries.len());
        // Shops are published together and storage flushed once at the
        // end: one copy of the shop map, not one per shop.
        *self.pending() = Some(Vec::with_capacity(entries.len()));
        for path in entries {
            let id = shop_id(&path);
            let since = std::time::Instant::now();
            progress.loading(&id);
            {
                let _guard = self.guard();
                self.load_shop(&path, &id, Actor::Startup);
            }
            progress.loaded(&id, since);
        }
        let shops = self.pending().take().unwrap_or_default();
        if let Err(e) = self.storage.flush() {
            tracing::error!(error = %e, "cannot flush deploy records");
        }
        self.registry.put_all(shops);
        Ok(())
    }

    /// Housekeeping after a start, once the shops serve: every shop's
    /// versions beyond `keep_versions` forgotten, then compiled artifacts
    /// nothing runs and unused for `unused_for` deleted.
    pub fn tidy(&self, unused_for: std::time::Duration) {
        // Pruning reads what each shop serves: after they are published.
        for id in self.registry.all().keys() {
            self.prune_versions(id);
        }
        self.sweep_cache(unused_for);
    }

    /// Shops loaded but not published yet, while `load_all` runs.
    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Vec<Shop>>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Serve `shop`: now, or with the others at the end of `load_all`.
    fn publish(&self, shop: Shop) {
        let mut pending = self.pending();
        match pending.as_mut() {
            Some(shops) => shops.push(shop),
            None => {
                drop(pending);
                self.registry.put(shop);
            }
        }
    }

    /// (Re)load one shop folder: after a change on disk, or at startup.
    /// Steps whose files did not change are left alone; a step whose new
    /// plugin or config is invalid keeps its active version.
    ///
    /// The shop's load failures from before stand no more afterwards: if
    /// something is still broken, this load reports it again.
    pub fn reload_shop(&self, dir: &Path, actor: Actor) {
        let _guard = self.guard();
        let id = shop_id(dir);
        let mark = self.registry.mark();
        self.load_shop(dir, &id, actor);
        self.registry.settle(&id, mark);
        self.prune_versions(&id);
    }

    fn load_shop(&self, dir: &Path, id: &str, actor: Actor) {
        let id = id.to_string();
        if !dir.join("shop.toml").is_file() {
            if self.registry.remove(&id) {
                tracing::info!(shop = %id, "shop folder removed: no longer served");
                self.audit(self.event(
                    &id,
                    AuditAction::ShopRemoved,
                    VersionSource::File,
                    actor,
                    "shop.toml is gone",
                ));
            }
            return;
        }
        let spec = match ShopSpec::load(dir, &*self.env) {
            Ok(spec) => spec,
            Err(e) => {
                self.degrade(dir, &id, e.to_string(), actor);
                return;
            }
        };
        if let Err(e) = self.storage.put_shop_record(&spec.record()) {
            tracing::error!(shop = %spec.id, error = %e, "cannot keep the shop's record");
        }
        let current = self.registry.get(&spec.id);
        let mut steps = HashMap::new();
        let mut unavailable = BTreeMap::new();
        let mut rollout = Rollout::default();
        for step in Step::ALL {
            let active = current.as_ref().and_then(|s| s.steps.get(&step).cloned());
            let policy = spec
                .steps
                .get(&step)
                .map(|s| s.policy.clone())
                .unwrap_or_default();
            match self.settle_step(&spec.id, step, spec.steps.get(&step), active, actor) {
                Ok(Settled {
                    active,
                    history,
                    activated: changed,
                }) => {
                    let running = current
                        .as_ref()
                        .and_then(|s| s.canaries.get(&step).cloned());
                    let kept = current.as_ref().and_then(|s| {
                        let same = s.steps.get(&step).is_some_and(|a| Arc::ptr_eq(a, &active));
                        let same_policy = s.policy(step).on_failure == policy.on_failure;
                        (same && same_policy).then(|| s.previous.get(&step).cloned())
                    });
                    let canary = spec.steps.get(&step).and_then(|s| s.canary.as_ref());
                    rollout.settle(
                        self,
                        &spec.id,
                        step,
                        &active,
                        policy,
                        kept,
                        running,
                        changed,
                        history.as_deref(),
                        actor,
                    );
                    let settled = rollout.canaries.remove(&step);
                    if let Some(c) =
                        self.folder_canary(&spec.id, step, canary, settled, &active, actor)
                    {
                        rollout.canaries.insert(step, c);
                    }
                    steps.insert(step, active);
                }
                Err(reason) => {
                    unavailable.insert(step, reason);
                }
            }
        }
        if self.pending().is_none()
            && let Err(e) = self.storage.flush()
        {
            tracing::error!(error = %e, "cannot flush deploy records");
        }
        self.publish(Shop {
            id: spec.id,
            name: spec.name,
            dir: spec.dir,
            key_sha256: spec.key_sha256,
            webhook: spec.webhook,
            steps,
            canaries: rollout.canaries,
            shadows: current.map(|s| s.shadows.clone()).unwrap_or_default(),
            previous: rollout.previous,
            policies: rollout.policies,
            unavailable,
            degraded: None,
        });
    }

    /// A shop whose `shop.toml` does not load: a running shop keeps what it
    /// serves; a shop loaded before (at an earlier start) starts on its
    /// stored active versions; either way it is marked degraded and its
    /// key still opens it. A shop never loaded serves nothing, and its
    /// steps answer 503 naming the load error.
    fn degrade(&self, dir: &Path, id: &str, error: String, actor: Actor) {
        if let Some(running) = self.registry.get(id) {
            self.reject(
                id,
                None,
                format!("{error}; the shop keeps its active versions"),
                actor,
            );
            self.publish(Shop {
                degraded: Some(error),
                ..Shop::clone(&running)
            });
            return;
        }
        let record = match self.storage.shop_record(id) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(shop = id, error = %e, "cannot read the shop's record");
                None
            }
        };
        let Some(record) = record else {
            self.reject(
                id,
                None,
                format!("{error}; the shop was never loaded and serves nothing"),
                actor,
            );
            let reason = format!("the shop's shop.toml does not load: {error}");
            self.publish(Shop {
                id: id.to_string(),
                name: id.to_string(),
                dir: dir.to_path_buf(),
                key_sha256: ShopSpec::readable_key(dir, &*self.env),
                webhook: None,
                steps: HashMap::new(),
                canaries: HashMap::new(),
                shadows: HashMap::new(),
                previous: HashMap::new(),
                policies: HashMap::new(),
                unavailable: Step::ALL.into_iter().map(|s| (s, reason.clone())).collect(),
                degraded: Some(error),
            });
            return;
        };
        self.reject(
            id,
            None,
            format!("{error}; the shop starts on its stored versions"),
            actor,
        );
        let mut steps = HashMap::new();
        let mut unavailable = BTreeMap::new();
        let mut rollout = Rollout::default();
        for step in Step::ALL {
            let history = self.storage.versions(id, step).map_err(|e| e.to_string());
            let restored = history
                .as_ref()
                .map_err(Clone::clone)
                .and_then(|history| self.restore_active(id, step, history));
            match restored {
                Ok(Some(active)) => {
                    let policy = Default::default();
                    let history = history.as_deref().ok();
                    rollout.settle(
                        self, id, step, &active, policy, None, None, false, history, actor,
                    );
                    steps.insert(step, active);
                }
                Ok(None) => {
                    unavailable.insert(
                        step,
                        format!("no stored version, and shop.toml does not load: {error}"),
                    );
                }
                Err(e) => {
                    unavailable.insert(step, e);
                }
            }
        }
        self.publish(Shop {
            id: id.to_string(),
            name: record.name.clone(),
            dir: dir.to_path_buf(),
            key_sha256: record.key_sha256.as_deref().and_then(parse_sha256),
            webhook: webhook_of(&record, &*self.env),
            steps,
            canaries: rollout.canaries,
            shadows: HashMap::new(),
            previous: rollout.previous,
            policies: rollout.policies,
            unavailable,
            degraded: Some(error),
        });
    }

    /// Decide what one step runs after a (re)load.
    fn settle_step(
        &self,
        shop: &str,
        step: Step,
        spec: Option<&StepSpec>,
        active: Option<Arc<ActivePlugin>>,
        actor: Actor,
    ) -> Result<Settled, String> {
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
                return restore(self)
                    .map(|active| Settled::kept(active, history.clone()))
                    .map_err(|_| reason);
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
            None => match history
                .iter()
                .rev()
                .find(|v| v.source != VersionSource::Api && !v.canary)
            {
                Some(from_folder) => signature_of(from_folder) == signature,
                None => history.iter().any(|v| signature_of(v) == signature),
            },
        };
        if unchanged && (active.is_some() || !history.is_empty()) {
            return restore(self).map(|active| Settled::kept(active, history.clone()));
        }
        let stored = self.storage.active(shop, step).ok().flatten();
        match self.activate_new(shop, step, candidate, &history, actor) {
            Ok(active) => Ok(Settled {
                activated: stored != Some(active.version),
                active,
                history: None,
            }),
            Err(e) => {
                self.reject(shop, Some(step), e.to_string(), actor);
                let active = restore(self).map_err(|_| e.to_string())?;
                Ok(Settled {
                    active,
                    history: None,
                    activated: false,
                })
            }
        }
    }

    /// What the shop folder says a step should run.
    pub(super) fn candidate(
        &self,
        step: Step,
        spec: Option<&StepSpec>,
    ) -> Result<Candidate, String> {
        let config_json = spec.map_or_else(|| "{}".to_string(), |s| s.config_json.clone());
        let asked = spec.and_then(|s| s.instances);
        // The bundled plugins keep nothing between calls: reused unless
        // the folder says otherwise.
        let reuse = |default| asked.map_or(default, |m| m == InstanceMode::Reuse);
        Ok(match spec.and_then(|s| s.plugin.as_ref()) {
            Some(path) => {
                let bytes = read_plugin(path).map_err(|e| e.to_string())?;
                Candidate {
                    digest: digest(&bytes),
                    bytes: Cow::Owned(bytes),
                    config_json,
                    source: PluginSource::File(path.clone()),
                    reuse: reuse(false),
                }
            }
            None => Candidate {
                bytes: Cow::Borrowed(step.default_plugin()),
                digest: default_digest(step).to_string(),
                config_json,
                source: PluginSource::Bundled,
                reuse: reuse(true),
            },
        })
    }

    /// Build the active plugin of a stored version.
    pub(super) fn restore_active(
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
}

/// What a step runs after a (re)load.
struct Settled {
    active: Arc<ActivePlugin>,
    /// The step's versions as read while settling, when settling wrote
    /// none (else they are read again).
    history: Option<Vec<VersionRecord>>,
    /// Another version was activated: the stable version changed.
    activated: bool,
}

impl Settled {
    /// The version that was active stands.
    fn kept(active: Arc<ActivePlugin>, history: Vec<VersionRecord>) -> Settled {
        Settled {
            active,
            history: Some(history),
            activated: false,
        }
    }
}

/// What a (re)loaded shop's steps fall back to, their canaries and
/// policies.
#[derive(Default)]
struct Rollout {
    canaries: HashMap<Step, Arc<Canary>>,
    previous: HashMap<Step, Arc<ActivePlugin>>,
    policies: HashMap<Step, StepPolicy>,
}

impl Rollout {
    /// Settle one step serving `active`: its fallback (`kept` when
    /// unchanged) and canary (`running`, or the stored one at start);
    /// `history`, the step's versions when already read.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &mut self,
        deployer: &Deployer,
        shop: &str,
        step: Step,
        active: &Arc<ActivePlugin>,
        policy: StepPolicy,
        kept: Option<Option<Arc<ActivePlugin>>>,
        running: Option<Arc<Canary>>,
        stable_changed: bool,
        history: Option<&[VersionRecord]>,
        actor: Actor,
    ) {
        let previous = match (kept, history) {
            (Some(kept), _) => kept,
            (None, Some(history)) => deployer.previous_of(shop, step, active, history, &policy),
            (None, None) => deployer
                .storage
                .versions(shop, step)
                .ok()
                .and_then(|history| deployer.previous_of(shop, step, active, &history, &policy)),
        };
        if let Some(previous) = previous {
            self.previous.insert(step, previous);
        }
        if let Some(canary) = deployer.settle_canary(shop, step, running, stable_changed, actor) {
            self.canaries.insert(step, canary);
        }
        if policy != StepPolicy::default() {
            self.policies.insert(step, policy);
        }
    }
}

/// SHA-256 of the default plugin of `step`, computed once.
impl Deployer {
    /// Delete compiled artifacts no version of any shop (nor a bundled
    /// plugin) runs and that were not used for `unused_for` (after the
    /// shops are loaded: a cache shared with another server keeps what
    /// that one uses).
    pub fn sweep_cache(&self, unused_for: std::time::Duration) {
        match self.storage.version_digests() {
            Ok(mut keep) => {
                keep.extend(Step::ALL.map(|s| default_digest(s).to_string()));
                self.runtime.sweep_cache(&keep, unused_for);
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the versions' components"),
        }
    }
}

/// A shop's id: its folder's name.
fn shop_id(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(super) fn default_digest(step: Step) -> &'static str {
    static DIGESTS: std::sync::OnceLock<[String; Step::ALL.len()]> = std::sync::OnceLock::new();
    let all = DIGESTS.get_or_init(|| Step::ALL.map(|s| digest(s.default_plugin())));
    &all[step as usize]
}
