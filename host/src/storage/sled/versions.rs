//! Versions of each shop's steps, the components they run (kept in a
//! store of their own, see `components`), what each shop's last good
//! `shop.toml` said, and the deploy audit.

use super::SledStorage;
use super::keys::{backend, decode, encode, step_prefix, timed_key};
use crate::steps::Step;
use crate::storage::{
    AuditEvent, AuditLog, CanaryRecord, ShopRecord, StorageError, VersionRecord, VersionStore,
};

impl VersionStore for SledStorage {
    fn put_component(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.components.put(digest, bytes)
    }

    fn component(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.components.get(digest)
    }

    fn put_version(
        &self,
        shop: &str,
        step: Step,
        record: &VersionRecord,
    ) -> Result<(), StorageError> {
        let mut key = step_prefix(shop, step);
        key.extend_from_slice(&record.version.to_be_bytes());
        self.versions
            .insert(key, encode(record)?)
            .map_err(backend)?;
        Ok(())
    }

    fn versions(&self, shop: &str, step: Step) -> Result<Vec<VersionRecord>, StorageError> {
        self.versions
            .scan_prefix(step_prefix(shop, step))
            .map(|item| decode(&item.map_err(backend)?.1))
            .collect()
    }

    fn remove_versions(
        &self,
        shop: &str,
        step: Step,
        versions: &[u64],
    ) -> Result<(), StorageError> {
        let mut batch = sled::Batch::default();
        for version in versions {
            let mut key = step_prefix(shop, step);
            key.extend_from_slice(&version.to_be_bytes());
            batch.remove(key);
        }
        self.versions.apply_batch(batch).map_err(backend)
    }

    fn version_digests(&self) -> Result<std::collections::HashSet<String>, StorageError> {
        let mut digests = std::collections::HashSet::new();
        for item in self.versions.iter() {
            let record: VersionRecord = decode(&item.map_err(backend)?.1)?;
            digests.insert(record.digest);
        }
        Ok(digests)
    }

    fn remove_component(&self, digest: &str) -> Result<(), StorageError> {
        self.components.remove(digest)
    }

    fn set_active(&self, shop: &str, step: Step, version: u64) -> Result<(), StorageError> {
        self.active
            .insert(step_prefix(shop, step), &version.to_be_bytes())
            .map_err(backend)?;
        Ok(())
    }

    fn active(&self, shop: &str, step: Step) -> Result<Option<u64>, StorageError> {
        let value = self.active.get(step_prefix(shop, step)).map_err(backend)?;
        value
            .map(|v| {
                let bytes: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("active version".into()))?;
                Ok(u64::from_be_bytes(bytes))
            })
            .transpose()
    }

    fn put_shop_record(&self, record: &ShopRecord) -> Result<(), StorageError> {
        let value = encode(record)?;
        let key = record.id.as_bytes();
        if self.shops.get(key).map_err(backend)?.as_deref() != Some(&value[..]) {
            self.shops.insert(key, value).map_err(backend)?;
        }
        Ok(())
    }

    fn shop_record(&self, shop: &str) -> Result<Option<ShopRecord>, StorageError> {
        self.shops
            .get(shop.as_bytes())
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn set_canary(
        &self,
        shop: &str,
        step: Step,
        record: Option<&CanaryRecord>,
    ) -> Result<(), StorageError> {
        let key = step_prefix(shop, step);
        match record {
            Some(record) => self.canaries.insert(key, encode(record)?),
            None => self.canaries.remove(key),
        }
        .map_err(backend)?;
        Ok(())
    }

    fn canary(&self, shop: &str, step: Step) -> Result<Option<CanaryRecord>, StorageError> {
        self.canaries
            .get(step_prefix(shop, step))
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }
}

impl AuditLog for SledStorage {
    fn append_audit(&self, e: &AuditEvent) -> Result<(), StorageError> {
        self.audit
            .insert(timed_key(&e.shop, e.at_ms, e.id), encode(e)?)
            .map_err(backend)?;
        Ok(())
    }

    fn audit(&self, shop: Option<&str>, limit: usize) -> Result<Vec<AuditEvent>, StorageError> {
        match shop {
            Some(shop) => Self::newest(&self.audit, shop, limit),
            None => {
                let mut all: Vec<AuditEvent> = self
                    .audit
                    .iter()
                    .map(|item| decode(&item.map_err(backend)?.1))
                    .collect::<Result<_, _>>()?;
                all.sort_by_key(|e| std::cmp::Reverse((e.at_ms, e.id)));
                all.truncate(limit);
                Ok(all)
            }
        }
    }
}
