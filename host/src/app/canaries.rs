//! The application's canary operations, as the transports call them:
//! see `rollout` for what a canary is and `deploy::canary` for how one
//! changes.

use super::deploy::{CanaryPlan, CanaryView};
use super::{App, DeployError, VersionView};
use crate::steps::Step;
use crate::storage::{Actor, StorageError};

impl App {
    /// The canary of a shop's step and its analysis now, if one runs.
    pub fn canary(&self, shop: &str, step: Step) -> Result<CanaryView, DeployError> {
        let running = self
            .registry
            .get(shop)
            .ok_or_else(|| DeployError::UnknownShop(shop.into()))?;
        let canary = running
            .canaries
            .get(&step)
            .ok_or_else(|| DeployError::NoCanary {
                shop: shop.into(),
                step,
            })?;
        Ok(CanaryView::of(&running, step, canary))
    }

    /// Start a canary of recorded `version` (or, without one, change the
    /// running canary's plan); blocking: it may compile.
    pub fn start_canary(
        &self,
        shop: &str,
        step: Step,
        version: Option<u64>,
        plan: CanaryPlan,
        actor: Actor,
    ) -> Result<CanaryView, DeployError> {
        let version = match version {
            Some(v) => v,
            None => self.canary(shop, step)?.version,
        };
        self.deployer
            .start_canary(shop, step, version, plan, actor)?;
        self.canary(shop, step)
    }

    /// Make the canary's version active for everyone.
    pub fn promote_canary(
        &self,
        shop: &str,
        step: Step,
        actor: Actor,
    ) -> Result<VersionView, DeployError> {
        let record = self.deployer.promote_canary(shop, step, actor)?;
        self.version_view(shop, step, record.version, VersionView::active)
    }

    /// Stop the canary: the stable version serves everyone.
    pub fn abort_canary(
        &self,
        shop: &str,
        step: Step,
        actor: Actor,
        reason: &str,
    ) -> Result<VersionView, DeployError> {
        let record = self.deployer.abort_canary(shop, step, actor, reason)?;
        self.version_view(shop, step, record.version, |v| {
            let mut view = VersionView::active(v);
            view.status = "inactive";
            view
        })
    }

    fn version_view(
        &self,
        shop: &str,
        step: Step,
        version: u64,
        view: impl Fn(&crate::storage::VersionRecord) -> VersionView,
    ) -> Result<VersionView, DeployError> {
        let history = self.storage.versions(shop, step)?;
        let record = history
            .iter()
            .find(|v| v.version == version)
            .ok_or_else(|| StorageError::Corrupt(format!("version {version} is not recorded")))?;
        Ok(view(record))
    }

    /// Look at every canary (abort, step up, promote); the background
    /// ticker's work, blocking.
    pub fn tick_canaries(&self) {
        self.deployer.tick_canaries();
    }
}
