//! Keeping each shop step's last `keep_versions` versions — never the
//! active, previous (fallback) or canary one — and dropping the component
//! bytes and compiled artifacts that only forgotten versions ran.

use super::Deployer;
use super::folder::default_digest;
use crate::steps::Step;
use crate::storage::StorageError;
use std::collections::HashSet;

impl Deployer {
    /// Forget `shop`'s versions beyond the last `keep_versions` of each
    /// step (0 keeps them all), then the components and compiled artifacts
    /// no remaining version of any shop names. Failures are logged: they
    /// only cost disk.
    pub(super) fn prune_versions(&self, shop: &str) {
        if self.keep_versions == 0 {
            return;
        }
        let mut dropped = HashSet::new();
        for step in Step::ALL {
            match self.prune_step(shop, step) {
                Ok(digests) => dropped.extend(digests),
                Err(e) => tracing::warn!(shop, step = %step, error = %e, "cannot prune versions"),
            }
        }
        if dropped.is_empty() {
            return;
        }
        let used = match self.storage.version_digests() {
            Ok(used) => used,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the versions' components");
                return;
            }
        };
        let bundled: HashSet<&str> = Step::ALL.into_iter().map(default_digest).collect();
        for digest in dropped.difference(&used) {
            if bundled.contains(digest.as_str()) {
                continue;
            }
            if let Err(e) = self.storage.remove_component(digest) {
                tracing::warn!(%digest, error = %e, "cannot remove a component");
                continue;
            }
            self.runtime.evict(digest);
            tracing::info!(%digest, "component no kept version runs: removed");
        }
    }

    /// Forget the versions of one step beyond the last `keep_versions`;
    /// the digests they named.
    fn prune_step(&self, shop: &str, step: Step) -> Result<Vec<String>, StorageError> {
        let history = self.storage.versions(shop, step)?;
        if history.len() <= self.keep_versions {
            return Ok(Vec::new());
        }
        let mut kept: HashSet<u64> = history
            .iter()
            .rev()
            .take(self.keep_versions)
            .map(|v| v.version)
            .collect();
        kept.extend(self.storage.active(shop, step)?);
        kept.extend(self.storage.canary(shop, step)?.map(|c| c.version));
        if let Some(running) = self.registry.get(shop) {
            kept.extend(running.steps.get(&step).map(|a| a.version));
            kept.extend(running.previous.get(&step).map(|p| p.version));
            kept.extend(running.canaries.get(&step).map(|c| c.plugin.version));
        }
        let (gone, digests): (Vec<u64>, Vec<String>) = history
            .into_iter()
            .filter(|v| !kept.contains(&v.version))
            .map(|v| (v.version, v.digest))
            .unzip();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        self.storage.remove_versions(shop, step, &gone)?;
        tracing::info!(shop, step = %step, versions = ?gone, keep = self.keep_versions, "old versions forgotten");
        Ok(digests)
    }
}
