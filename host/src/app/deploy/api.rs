//! Deploys through the API: an uploaded component as the next version,
//! and rollback to an earlier one.

use super::{CanaryPlan, Candidate, DeployError, Deployer, active_plugin};
use crate::app::registry::PluginSource;
use crate::runtime::digest;
use crate::steps::Step;
use crate::storage::{Actor, AuditAction, AuditEvent, VersionRecord, VersionSource};
use std::borrow::Cow;

/// What a deploy through the API brings: a component, a config, or both.
/// What it leaves out is kept from the active version.
#[derive(Debug, Default)]
pub struct DeployRequest {
    /// The component's bytes.
    pub component: Option<Vec<u8>>,
    /// The plugin config, as JSON object text.
    pub config_json: Option<String>,
    /// Serve the new version to a share of customers first, not to all.
    pub canary: Option<CanaryPlan>,
}

impl Deployer {
    /// Deploy a component and/or a config as the next version of a shop's
    /// step; both go live together, and what the request leaves out is
    /// the active version's.
    pub fn deploy_api(
        &self,
        shop_id: &str,
        step: Step,
        request: DeployRequest,
        actor: Actor,
    ) -> Result<VersionRecord, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        self.no_canary(&shop, step)?;
        if let Some(plan) = &request.canary {
            plan.check().map_err(DeployError::InvalidCanary)?;
        }
        let active = shop.steps.get(&step);
        let config_json = match request.config_json {
            Some(config) => config,
            None => active.map_or_else(|| "{}".to_string(), |a| a.config_json.clone()),
        };
        let reuse = active.is_some_and(|a| a.pool.is_some());
        let bytes = match (request.component, active) {
            (Some(bytes), _) => bytes,
            (None, Some(active)) => self.storage.version_component(active.plugin.digest())?,
            (None, None) => return Err(DeployError::NoComponent { step }),
        };
        let history = self.storage.versions(shop_id, step)?;
        let candidate = Candidate {
            digest: digest(&bytes),
            bytes: Cow::Owned(bytes),
            config_json,
            source: PluginSource::Api,
            reuse,
        };
        if let Some(plan) = request.canary {
            if !shop.steps.contains_key(&step) {
                return Err(DeployError::InvalidCanary(format!(
                    "step `{step}` serves no version to compare a canary with"
                )));
            }
            let (plugin, record) =
                match self.record_new(shop_id, step, candidate, &history, actor, true) {
                    Ok(new) => new,
                    Err(e) => {
                        self.reject(shop_id, Some(step), e.to_string(), actor);
                        return Err(e);
                    }
                };
            self.begin_canary(&shop, step, plugin, &record, plan, actor)?;
            self.prune_versions(shop_id);
            return Ok(record);
        }
        let active = match self.activate_new(shop_id, step, candidate, &history, actor) {
            Ok(active) => active,
            Err(e) => {
                self.reject(shop_id, Some(step), e.to_string(), actor);
                return Err(e);
            }
        };
        self.swap(&shop, step, active)?;
        self.registry.resolve(shop_id, step);
        let history = self.storage.versions(shop_id, step)?;
        let record = history.last().cloned().expect("just recorded");
        self.prune_versions(shop_id);
        Ok(record)
    }

    /// Make an earlier version active again: `to`, or the one before the
    /// active one.
    pub fn rollback(
        &self,
        shop_id: &str,
        step: Step,
        to: Option<u64>,
        actor: Actor,
    ) -> Result<VersionRecord, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        self.no_canary(&shop, step)?;
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
        self.audit(AuditEvent {
            step: Some(step),
            version: Some(target.version),
            digest: Some(target.digest.clone()),
            ..self.event(
                shop_id,
                AuditAction::RolledBack,
                VersionSource::Api,
                actor,
                &reason,
            )
        });
        self.swap(&shop, step, active_plugin(plugin, target))?;
        self.registry.resolve(shop_id, step);
        tracing::info!(shop = shop_id, step = %step, version = target.version, "rolled back");
        Ok(target.clone())
    }
}
