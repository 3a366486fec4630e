//! Shadow runs as changes of a running shop: one starts or stops under
//! the deploy lock (so no deploy or reload loses it), audited.

use super::{DeployError, Deployer};
use crate::app::replay::shadow::Shadow;
use crate::steps::Step;
use crate::storage::{Actor, AuditAction, AuditEvent, VersionSource};
use std::sync::Arc;

impl Deployer {
    /// Start `shadow` on `shop_id`'s `step`; one at a time per step.
    pub fn start_shadow(
        &self,
        shop_id: &str,
        step: Step,
        shadow: Shadow,
        actor: Actor,
    ) -> Result<(), DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        if let Some(running) = shop.shadows.get(&step) {
            return Err(DeployError::ShadowRunning {
                shop: shop_id.into(),
                step,
                candidate: running.candidate.clone(),
            });
        }
        self.audit(AuditEvent {
            step: Some(step),
            ..self.event(
                shop_id,
                AuditAction::ShadowStarted,
                VersionSource::Api,
                actor,
                &format!("shadow of {}", shadow.candidate),
            )
        });
        tracing::info!(shop = shop_id, step = %step, candidate = %shadow.candidate, "shadow started");
        let mut next = shop.as_ref().clone();
        next.shadows.insert(step, Arc::new(shadow));
        self.registry.put(next);
        Ok(())
    }

    /// Stop the shadow of `shop_id`'s `step`; what it found.
    pub fn stop_shadow(
        &self,
        shop_id: &str,
        step: Step,
        actor: Actor,
    ) -> Result<Arc<Shadow>, DeployError> {
        let _guard = self.guard();
        let shop = self.running_shop(shop_id)?;
        let shadow = shop
            .shadows
            .get(&step)
            .cloned()
            .ok_or_else(|| DeployError::NoShadow {
                shop: shop_id.into(),
                step,
            })?;
        let report = shadow.view().report;
        self.audit(AuditEvent {
            step: Some(step),
            ..self.event(
                shop_id,
                AuditAction::ShadowStopped,
                VersionSource::Api,
                actor,
                &format!(
                    "shadow of {}: {} compared, {} different, {} candidate errors",
                    shadow.candidate,
                    report.replayed,
                    report.changed,
                    report.candidate_errors.values().sum::<u64>()
                ),
            )
        });
        tracing::info!(shop = shop_id, step = %step, "shadow stopped");
        let mut next = shop.as_ref().clone();
        next.shadows.remove(&step);
        self.registry.put(next);
        Ok(shadow)
    }
}
