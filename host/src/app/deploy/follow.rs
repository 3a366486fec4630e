//! Following what another node changed in a step (several nodes on one
//! NATS store): the step swaps to the version stored as active (a deploy,
//! a rollback, a promotion), and serves the stored canary (started,
//! changed in percent, ended).

use super::Deployer;
use crate::app::registry::Shop;
use crate::app::rollout::Canary;
use crate::steps::Step;
use crate::storage::Actor;
use std::sync::Arc;

impl Deployer {
    /// Serve what storage says `shop`'s `step` runs — its active version
    /// and its canary — if this node serves the shop and runs otherwise.
    pub fn follow(&self, shop_id: &str, step: Step) {
        let _guard = self.guard();
        if let Err(e) = self.follow_active(shop_id, step) {
            tracing::error!(shop = shop_id, step = %step, error = %e, "cannot serve the version another node made active");
        }
        if let Some(shop) = self.registry.get(shop_id) {
            self.follow_canary(&shop, step);
        }
    }

    fn follow_active(&self, shop_id: &str, step: Step) -> Result<(), String> {
        let Some(shop) = self.registry.get(shop_id) else {
            return Ok(());
        };
        let Some(active) = self
            .storage
            .active(shop_id, step)
            .map_err(|e| e.to_string())?
        else {
            return Ok(());
        };
        if shop.steps.get(&step).is_some_and(|a| a.version == active) {
            return Ok(());
        }
        let history = self
            .storage
            .versions(shop_id, step)
            .map_err(|e| e.to_string())?;
        let plugin = self
            .restore_active(shop_id, step, &history)?
            .ok_or_else(|| "no active version".to_string())?;
        self.swap(&shop, step, plugin).map_err(|e| e.to_string())?;
        self.registry.resolve(shop_id, step);
        tracing::info!(shop = shop_id, step = %step, version = active, "serving the version another node made active");
        Ok(())
    }

    fn follow_canary(&self, shop: &Shop, step: Step) {
        let stored = match self.storage.canary(&shop.id, step) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(shop = %shop.id, step = %step, error = %e, "cannot read the step's canary");
                return;
            }
        };
        let running = shop.canaries.get(&step);
        let next: Option<Arc<Canary>> = match (&stored, running) {
            (None, None) => return,
            (Some(record), Some(c)) if c.record == *record => return,
            // A percent or plan changed: the same version, its counts kept.
            (Some(record), Some(c)) if c.record.version == record.version => Some(Arc::new(
                Canary::new(c.plugin.clone(), record.clone(), Some(c.stats.clone())),
            )),
            (Some(_), _) => self.settle_canary(&shop.id, step, None, false, Actor::Analysis),
            (None, Some(_)) => None,
        };
        let mut changed = shop.clone();
        match &next {
            Some(canary) => {
                tracing::info!(shop = %shop.id, step = %step, version = canary.record.version, percent = canary.record.percent, "serving the canary another node set");
                changed.canaries.insert(step, canary.clone());
            }
            None => {
                tracing::info!(shop = %shop.id, step = %step, "the canary another node ended ends here too");
                changed.canaries.remove(&step);
            }
        }
        self.registry.put(changed);
    }
}
