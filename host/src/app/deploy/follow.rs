//! Following a deploy or rollback another node made (several nodes on one
//! NATS store): the step swaps to the version stored as active.

use super::Deployer;
use crate::steps::Step;

impl Deployer {
    /// Serve the stored active version of `shop`'s `step`, if this node
    /// serves the shop and runs another version.
    pub fn follow(&self, shop_id: &str, step: Step) {
        let _guard = self.guard();
        let Some(shop) = self.registry.get(shop_id) else {
            return;
        };
        let (history, active) = match (
            self.storage.versions(shop_id, step),
            self.storage.active(shop_id, step),
        ) {
            (Ok(history), Ok(Some(active))) => (history, active),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(shop = shop_id, step = %step, error = %e, "cannot follow another node's deploy");
                return;
            }
            _ => return,
        };
        if shop.steps.get(&step).is_some_and(|a| a.version == active) {
            return;
        }
        let swapped = self
            .restore_active(shop_id, step, &history)
            .and_then(|plugin| {
                let plugin = plugin.ok_or_else(|| "no active version".to_string())?;
                self.swap(&shop, step, plugin).map_err(|e| e.to_string())
            });
        match swapped {
            Ok(()) => {
                self.registry.resolve(shop_id, step);
                tracing::info!(shop = shop_id, step = %step, version = active, "serving the version another node made active");
            }
            Err(e) => {
                tracing::error!(shop = shop_id, step = %step, version = active, error = %e, "cannot serve the version another node made active");
            }
        }
    }
}
