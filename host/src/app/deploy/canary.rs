//! Canaries as deploys: start one (on a recorded version, or with a new
//! one), change its percent, promote it, abort it (by hand or on the
//! analysis' evidence), step it up while healthy, and resume it at start.
//! Each change is kept (`VersionStore::set_canary`) and audited.

use super::{DeployError, Deployer, Signature, active_plugin, signature_of};
use crate::app::config::{CanarySpec, InstanceMode, StepSpec};
use crate::app::registry::ActivePlugin;
use crate::app::registry::{Shop, now_ms};
use crate::app::rollout::analysis::{ArmSummary, Evidence, Thresholds, Verdict};
use crate::app::rollout::{Canary, OnFailure};
use crate::runtime::Plugin;
use crate::steps::Step;
use crate::storage::{
    Actor, AuditAction, AuditEvent, CanaryRecord, Delivery, VersionRecord, VersionSource,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Seconds between automatic steps unless the plan says.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;

/// How a canary rolls out: its share of customers now, and optionally
/// the shares to step through while the analysis finds it healthy.
#[derive(Clone, Debug, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CanaryPlan {
    /// Share of the shop's customers, above 0 and at most 100
    /// (hundredths of a percent count).
    pub percent: f64,
    /// Automatic promotion: increasing percents to go through while
    /// healthy; reaching 100 promotes. Empty: a person promotes.
    #[serde(default)]
    pub steps: Vec<f64>,
    /// Seconds between two automatic steps (default 300).
    #[serde(default)]
    pub interval_secs: Option<u64>,
}

impl CanaryPlan {
    /// Seconds between automatic steps: none without steps.
    fn interval(&self) -> u64 {
        match self.steps.is_empty() {
            true => 0,
            false => self.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS),
        }
    }

    /// What is wrong with the plan, if anything.
    pub fn check(&self) -> Result<(), String> {
        let valid = |p: f64| p.is_finite() && p > 0.0 && p <= 100.0;
        if !valid(self.percent) {
            return Err(format!(
                "percent must be above 0 and at most 100, not {}",
                self.percent
            ));
        }
        let mut last = self.percent;
        for &p in &self.steps {
            if !valid(p) || p <= last {
                return Err(format!(
                    "steps must increase from the percent ({}) up to at most 100: {:?}",
                    self.percent, self.steps
                ));
            }
            last = p;
        }
        if self.interval_secs == Some(0) {
            return Err("interval_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// A running canary and how it compares, as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CanaryView {
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Step,
    /// The canary's version...
    pub version: u64,
    /// ...and the stable one the others get.
    pub stable_version: u64,
    pub percent: f64,
    pub steps: Vec<f64>,
    pub interval_secs: u64,
    pub started_at_ms: i64,
    pub changed_at_ms: i64,
    #[schema(value_type = String)]
    pub actor: Actor,
    /// What the decision share counts for this step (e.g. `approved`).
    pub share: &'static str,
    pub stable: ArmSummary,
    pub canary: ArmSummary,
    /// The analysis now.
    pub analysis: Verdict,
    pub thresholds: Thresholds,
}

impl CanaryView {
    pub fn of(shop: &Shop, step: Step, canary: &Canary) -> Self {
        let thresholds = shop.policy(step).analysis.clone();
        let (stable, candidate) = (
            canary.stats.stable.snapshot(),
            canary.stats.canary.snapshot(),
        );
        CanaryView {
            shop: shop.id.clone(),
            step,
            version: canary.record.version,
            stable_version: shop.steps.get(&step).map_or(0, |a| a.version),
            percent: canary.record.percent,
            steps: canary.record.steps.clone(),
            interval_secs: canary.record.interval_secs,
            started_at_ms: canary.record.started_at_ms,
            changed_at_ms: canary.record.changed_at_ms,
            actor: canary.record.actor,
            share: step.share_name(),
            stable: stable.summary(),
            canary: candidate.summary(),
            analysis: crate::app::rollout::analysis::analyze(&thresholds, &stable, &candidate),
            thresholds,
        }
    }
}

/// A salt for a new canary: customers it takes are independent of any
/// earlier canary's.
fn new_salt(shop: &str, step: Step, version: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let digest = Sha256::digest(format!("{shop}\0{step}\0{version}\0{nanos}"));
    hex::encode(&digest[..8])
}

impl Deployer {
    /// Start a canary of a recorded `version`, or change the percent of
    /// the one running when it is that version.
    pub fn start_canary(
        &self,
        shop_id: &str,
        step: Step,
        version: u64,
        plan: CanaryPlan,
        actor: Actor,
    ) -> Result<CanaryRecord, DeployError> {
        plan.check().map_err(DeployError::InvalidCanary)?;
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        if let Some(running) = shop.canaries.get(&step) {
            if running.record.version != version {
                return Err(DeployError::CanaryRunning {
                    shop: shop_id.into(),
                    step,
                    version: running.record.version,
                });
            }
            return self.change(&shop, step, running, plan, actor);
        }
        let Some(stable) = shop.steps.get(&step) else {
            return Err(DeployError::InvalidCanary(format!(
                "step `{step}` serves no version to compare a canary with"
            )));
        };
        if stable.version == version {
            return Err(DeployError::InvalidCanary(format!(
                "version {version} is the active one already"
            )));
        }
        let history = self.storage.versions(shop_id, step)?;
        let record =
            history
                .iter()
                .find(|r| r.version == version)
                .ok_or(DeployError::UnknownVersion {
                    shop: shop_id.into(),
                    step,
                    version,
                })?;
        let plugin = self.plugin_of(step, record)?;
        self.trial(step, &plugin, &record.config_json)?;
        self.begin_canary(&shop, step, plugin, record, plan, actor)
    }

    /// Start serving `record` as the canary of `shop`'s `step`.
    pub(super) fn begin_canary(
        &self,
        shop: &Shop,
        step: Step,
        plugin: Plugin,
        record: &VersionRecord,
        plan: CanaryPlan,
        actor: Actor,
    ) -> Result<CanaryRecord, DeployError> {
        let canary = self.open_canary(&shop.id, step, plugin, record, plan, actor)?;
        Ok(self.serve_canary(shop, step, canary))
    }

    /// Swap `canary` into the running `shop`'s `step`; its record.
    fn serve_canary(&self, shop: &Shop, step: Step, canary: Arc<Canary>) -> CanaryRecord {
        let kept = canary.record.clone();
        let mut next = shop.clone();
        next.canaries.insert(step, canary);
        self.registry.put(next);
        kept
    }

    /// Keep and audit a new canary of `record`; the caller puts it in the
    /// shop it serves.
    fn open_canary(
        &self,
        shop: &str,
        step: Step,
        plugin: Plugin,
        record: &VersionRecord,
        plan: CanaryPlan,
        actor: Actor,
    ) -> Result<Arc<Canary>, DeployError> {
        let now = now_ms();
        let canary = CanaryRecord {
            version: record.version,
            percent: plan.percent,
            salt: new_salt(shop, step, record.version),
            interval_secs: plan.interval(),
            steps: plan.steps,
            started_at_ms: now,
            changed_at_ms: now,
            actor,
        };
        self.storage.set_canary(shop, step, Some(&canary))?;
        self.storage.flush()?;
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(record.version),
            digest: Some(record.digest.clone()),
            ..self.event(
                shop,
                AuditAction::CanaryStarted,
                record.source,
                actor,
                &format!("{}% of customers", canary.percent),
            )
        });
        tracing::info!(shop, step = %step, version = record.version, percent = canary.percent, "canary started");
        Ok(Arc::new(Canary::new(
            active_plugin(plugin, record),
            canary,
            None,
        )))
    }

    /// A running canary's new percent (and plan).
    fn change(
        &self,
        shop: &Shop,
        step: Step,
        running: &Canary,
        plan: CanaryPlan,
        actor: Actor,
    ) -> Result<CanaryRecord, DeployError> {
        let record = CanaryRecord {
            percent: plan.percent,
            interval_secs: plan.interval(),
            steps: plan.steps,
            changed_at_ms: now_ms(),
            actor,
            ..running.record.clone()
        };
        self.set_percent(shop, step, running, record)
    }

    fn set_percent(
        &self,
        shop: &Shop,
        step: Step,
        running: &Canary,
        record: CanaryRecord,
    ) -> Result<CanaryRecord, DeployError> {
        let canary = self.replan(&shop.id, step, running, record)?;
        Ok(self.serve_canary(shop, step, canary))
    }

    /// Keep and audit a running canary's new percent and plan; the caller
    /// puts the changed canary in its shop.
    fn replan(
        &self,
        shop: &str,
        step: Step,
        running: &Canary,
        record: CanaryRecord,
    ) -> Result<Arc<Canary>, DeployError> {
        self.storage.set_canary(shop, step, Some(&record))?;
        self.storage.flush()?;
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(record.version),
            digest: Some(running.plugin.plugin.digest().to_string()),
            ..self.event(
                shop,
                AuditAction::CanaryChanged,
                VersionSource::Api,
                record.actor,
                &format!(
                    "from {}% to {}% of customers",
                    running.record.percent, record.percent
                ),
            )
        });
        tracing::info!(shop, step = %step, version = record.version, percent = record.percent, "canary changed");
        Ok(Arc::new(Canary::new(
            running.plugin.clone(),
            record,
            Some(running.stats.clone()),
        )))
    }

    /// Make the canary's version the active one for every customer.
    pub fn promote_canary(
        &self,
        shop_id: &str,
        step: Step,
        actor: Actor,
    ) -> Result<CanaryRecord, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        let canary = self.canary_of(&shop, step)?;
        self.promote(&shop, step, &canary, actor)
    }

    fn promote(
        &self,
        shop: &Shop,
        step: Step,
        canary: &Canary,
        actor: Actor,
    ) -> Result<CanaryRecord, DeployError> {
        let version = canary.record.version;
        self.storage.set_active(&shop.id, step, version)?;
        self.storage.set_canary(&shop.id, step, None)?;
        self.storage.flush()?;
        let from = shop.steps.get(&step).map_or(0, |a| a.version);
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(version),
            digest: Some(canary.plugin.plugin.digest().to_string()),
            ..self.event(
                &shop.id,
                AuditAction::CanaryPromoted,
                VersionSource::Api,
                actor,
                &format!("from version {from} at {}%", canary.record.percent),
            )
        });
        tracing::info!(shop = %shop.id, step = %step, version, "canary promoted");
        let mut next = shop.clone();
        next.canaries.remove(&step);
        // The version it replaces is the one to fall back to.
        match (shop.steps.get(&step), shop.policy(step).on_failure) {
            (Some(stable), OnFailure::Previous | OnFailure::Default) => {
                next.previous.insert(step, stable.clone())
            }
            _ => next.previous.remove(&step),
        };
        next.steps.insert(step, canary.plugin.clone());
        self.registry.put(next);
        Ok(canary.record.clone())
    }

    /// Stop a canary: the stable version serves everyone again.
    pub fn abort_canary(
        &self,
        shop_id: &str,
        step: Step,
        actor: Actor,
        reason: &str,
    ) -> Result<CanaryRecord, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        let canary = self.canary_of(&shop, step)?;
        self.abort(&shop, step, &canary, actor, reason, None)
    }

    /// Abort the canary that started at `started_at_ms` on the analysis'
    /// evidence (from the request path; a canary started since is left
    /// alone).
    pub fn abort_on_evidence(
        &self,
        shop_id: &str,
        step: Step,
        started_at_ms: i64,
        evidence: Evidence,
    ) {
        let _guard = self.guard();
        let Some((shop, canary)) = self.same_canary(shop_id, step, started_at_ms) else {
            return;
        };
        if let Err(e) = self.abort(
            &shop,
            step,
            &canary,
            Actor::Analysis,
            &evidence.detail,
            Some(&evidence),
        ) {
            tracing::error!(shop = shop_id, step = %step, error = %e, "cannot abort the canary");
            canary.stats.release_end();
        }
    }

    fn abort(
        &self,
        shop: &Shop,
        step: Step,
        canary: &Canary,
        actor: Actor,
        reason: &str,
        evidence: Option<&Evidence>,
    ) -> Result<CanaryRecord, DeployError> {
        let version = canary.record.version;
        self.storage.set_canary(&shop.id, step, None)?;
        let detail = match evidence {
            Some(e) => format!(
                "{reason}; evidence: {}",
                serde_json::to_string(e).unwrap_or_default()
            ),
            None => reason.to_string(),
        };
        if let Some(webhook) = &shop.webhook {
            let body = serde_json::json!({
                "event": "canary.aborted",
                "shop": shop.id,
                "step": step,
                "version": version,
                "stable_version": shop.steps.get(&step).map_or(0, |a| a.version),
                "by": actor,
                "reason": reason,
                "evidence": evidence,
            });
            let delivery = Delivery {
                key: format!(
                    "canary-{}-{}-{}",
                    step.world(),
                    version,
                    canary.record.started_at_ms
                ),
                shop: shop.id.clone(),
                url: webhook.url.clone(),
                body: body.to_string(),
                tries: 0,
                next_try_ms: now_ms(),
                last_error: None,
                dead: false,
                idempotency_key: None,
                queued_ms: now_ms(),
            };
            self.storage.put_deliveries(&[delivery])?;
        }
        self.storage.flush()?;
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(version),
            digest: Some(canary.plugin.plugin.digest().to_string()),
            ..self.event(
                &shop.id,
                AuditAction::CanaryAborted,
                VersionSource::Api,
                actor,
                &detail,
            )
        });
        metrics::counter!("kefu_canary_aborts_total", "shop" => shop.id.clone(), "step" => step.world(), "by" => actor.as_str()).increment(1);
        tracing::warn!(shop = %shop.id, step = %step, version, by = %actor, reason = %detail, "canary aborted");
        let mut next = shop.clone();
        next.canaries.remove(&step);
        self.registry.put(next);
        Ok(canary.record.clone())
    }

    /// The shop and its step's canary, if that canary is still the one
    /// that started at `started_at_ms` (the analysis acts on what it saw,
    /// never on a canary started since).
    fn same_canary(
        &self,
        shop_id: &str,
        step: Step,
        started_at_ms: i64,
    ) -> Option<(Arc<Shop>, Arc<Canary>)> {
        let shop = self.running_shop(shop_id).ok()?;
        let canary = shop.canaries.get(&step).cloned()?;
        (canary.record.started_at_ms == started_at_ms).then_some((shop, canary))
    }

    fn canary_of(&self, shop: &Shop, step: Step) -> Result<Arc<Canary>, DeployError> {
        shop.canaries
            .get(&step)
            .cloned()
            .ok_or_else(|| DeployError::NoCanary {
                shop: shop.id.clone(),
                step,
            })
    }

    /// Look at every canary: abort a regressed one, and step up (or
    /// promote) a healthy one whose plan's interval has passed. Run every
    /// second or so.
    pub fn tick_canaries(&self) {
        let now = now_ms();
        for shop in self.registry.all().values() {
            for (step, canary) in &shop.canaries {
                let verdict = canary.stats.verdict(&shop.policy(*step).analysis);
                match verdict {
                    Verdict::Regressed(evidence) if canary.stats.claim_end() => {
                        self.abort_on_evidence(
                            &shop.id,
                            *step,
                            canary.record.started_at_ms,
                            evidence,
                        );
                    }
                    Verdict::Healthy if !canary.record.steps.is_empty() => {
                        let due =
                            canary.record.changed_at_ms + canary.record.interval_secs as i64 * 1000;
                        if now >= due {
                            self.step_up(&shop.id, *step, canary.record.started_at_ms);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Move a healthy canary to its plan's next percent, promoting it at
    /// 100.
    fn step_up(&self, shop_id: &str, step: Step, started_at_ms: i64) {
        let _guard = self.guard();
        let Some((shop, canary)) = self.same_canary(shop_id, step, started_at_ms) else {
            return;
        };
        let next = canary
            .record
            .steps
            .iter()
            .copied()
            .find(|p| *p > canary.record.percent);
        let done = match next {
            Some(p) if p < 100.0 => {
                let record = CanaryRecord {
                    percent: p,
                    changed_at_ms: now_ms(),
                    actor: Actor::Analysis,
                    ..canary.record.clone()
                };
                self.set_percent(&shop, step, &canary, record).map(|_| ())
            }
            _ => self
                .promote(&shop, step, &canary, Actor::Analysis)
                .map(|_| ()),
        };
        if let Err(e) = done {
            tracing::error!(shop = shop_id, step = %step, error = %e, "cannot step the canary up");
        }
    }

    /// The canary a (re)loaded step keeps: the one running, or at start
    /// the stored one. A folder change of the step's stable version ends
    /// it (the comparison would no longer hold).
    pub(super) fn settle_canary(
        &self,
        shop: &str,
        step: Step,
        running: Option<Arc<Canary>>,
        stable_changed: bool,
        actor: Actor,
    ) -> Option<Arc<Canary>> {
        let stored = match self.storage.canary(shop, step) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(shop, step = %step, error = %e, "cannot read the step's canary");
                return running;
            }
        };
        let record = stored?;
        let end =
            |this: &Self, reason: &str| this.end_stored(shop, step, record.version, actor, reason);
        if stable_changed {
            end(
                self,
                "the shop's folder changed the step's stable version: the canary ended",
            );
            return None;
        }
        if running.is_some() {
            return running;
        }
        let loaded = self
            .storage
            .versions(shop, step)
            .map_err(DeployError::from)
            .and_then(|history| {
                let v = history
                    .into_iter()
                    .find(|v| v.version == record.version)
                    .ok_or(DeployError::UnknownVersion {
                        shop: shop.into(),
                        step,
                        version: record.version,
                    })?;
                Ok((self.plugin_of(step, &v)?, v))
            });
        match loaded {
            Ok((plugin, version)) => {
                tracing::info!(shop, step = %step, version = record.version, percent = record.percent, "canary resumed");
                Some(Arc::new(Canary::new(
                    active_plugin(plugin, &version),
                    record,
                    None,
                )))
            }
            Err(e) => {
                end(self, &format!("its version cannot be loaded: {e}"));
                None
            }
        }
    }

    /// End a step's stored canary from a reload (no shop to swap yet).
    fn end_stored(&self, shop: &str, step: Step, version: u64, actor: Actor, reason: &str) {
        if let Err(e) = self.storage.set_canary(shop, step, None) {
            tracing::error!(shop, step = %step, error = %e, "cannot end the canary");
        }
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(version),
            ..self.event(
                shop,
                AuditAction::CanaryAborted,
                VersionSource::File,
                actor,
                reason,
            )
        });
        metrics::counter!("kefu_canary_aborts_total", "shop" => shop.to_string(), "step" => step.world(), "by" => actor.as_str()).increment(1);
        tracing::warn!(shop, step = %step, version, reason, "canary ended");
    }

    /// What a step's `canary` table in its folder makes of the step's
    /// canary after a (re)load: a new table (or a changed plugin or
    /// config in it) starts one on a new version, a changed percent or
    /// plan changes it, a removed table ends the canary it started. A
    /// table seen before (at an earlier start, even when its canary was
    /// promoted or aborted since) starts nothing again.
    pub(super) fn folder_canary(
        &self,
        shop: &str,
        step: Step,
        spec: Option<&CanarySpec>,
        canary: Option<Arc<Canary>>,
        active: &ActivePlugin,
        actor: Actor,
    ) -> Option<Arc<Canary>> {
        let key = (shop.to_string(), step);
        // No canary in the folder and none running: nothing to end or
        // start, and the versions need not be read (most steps, at start).
        if spec.is_none() && canary.is_none() {
            self.seen_canary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key);
            return None;
        }
        let history = match self.storage.versions(shop, step) {
            Ok(history) => history,
            Err(e) => {
                tracing::error!(shop, step = %step, error = %e, "cannot read the step's versions");
                return canary;
            }
        };
        let runs = |sig: &Signature| {
            canary.as_ref().is_some_and(|c| {
                history
                    .iter()
                    .any(|v| v.version == c.record.version && &signature_of(v) == sig)
            })
        };
        let Some(spec) = spec else {
            let before = self
                .seen_canary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&key)
                .flatten();
            return match before {
                Some((sig, _)) if runs(&sig) => {
                    let version = canary.as_ref().map_or(0, |c| c.record.version);
                    self.end_stored(
                        shop,
                        step,
                        version,
                        actor,
                        "the shop folder's canary table was removed",
                    );
                    None
                }
                _ => canary,
            };
        };
        let candidate = match self.candidate(
            step,
            Some(&StepSpec {
                plugin: spec.plugin.clone(),
                config_json: spec.config_json.clone(),
                instances: Some(if active.pool.is_some() {
                    InstanceMode::Reuse
                } else {
                    InstanceMode::Fresh
                }),
                policy: Default::default(),
                canary: None,
            }),
        ) {
            Ok(c) => c,
            Err(reason) => {
                self.reject(shop, Some(step), format!("canary: {reason}"), actor);
                return canary;
            }
        };
        let sig: Signature = (
            candidate.digest.clone(),
            candidate.config_json.clone(),
            candidate.reuse,
        );
        let before = self
            .seen_canary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone(), Some((sig.clone(), spec.plan.clone())));
        let known = match &before {
            Some(Some((seen, _))) => seen == &sig,
            Some(None) => false,
            // First look: a canary of this signature was started before.
            None => history.iter().any(|v| v.canary && signature_of(v) == sig),
        };
        if known {
            // The same version: only its percent or plan may have changed.
            let plan_changed = match &before {
                Some(Some((_, plan))) => plan != &spec.plan,
                _ => false,
            };
            return match canary {
                Some(c) if plan_changed && runs(&sig) => {
                    let record = CanaryRecord {
                        percent: spec.plan.percent,
                        interval_secs: spec.plan.interval(),
                        steps: spec.plan.steps.clone(),
                        changed_at_ms: now_ms(),
                        actor,
                        ..c.record.clone()
                    };
                    match self.replan(shop, step, &c, record) {
                        Ok(changed) => Some(changed),
                        Err(e) => {
                            tracing::error!(shop, step = %step, error = %e, "cannot change the canary");
                            Some(c)
                        }
                    }
                }
                other => other,
            };
        }
        if sig
            == (
                active.plugin.digest().to_string(),
                active.config_json.clone(),
                active.pool.is_some(),
            )
        {
            return canary;
        }
        if let Some(c) = &canary {
            self.end_stored(
                shop,
                step,
                c.record.version,
                actor,
                "the shop folder's canary table names another version",
            );
        }
        let started = self
            .record_new(shop, step, candidate, &history, actor, true)
            .and_then(|(plugin, record)| {
                self.open_canary(shop, step, plugin, &record, spec.plan.clone(), actor)
            });
        match started {
            Ok(c) => Some(c),
            Err(e) => {
                self.reject(shop, Some(step), format!("canary: {e}"), actor);
                None
            }
        }
    }
}
