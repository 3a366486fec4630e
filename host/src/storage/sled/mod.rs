//! The embedded backend: sled 0.34. One tree per kind of record; keys
//! and values are made in `keys`, plugin state lives in `state`.

mod components;
mod keys;
mod state;
#[cfg(test)]
mod tests;

use super::records::{
    AuditEvent, Decision, DecisionQuery, Delivery, RefundRecord, RevisitRecord, VersionRecord,
};
use super::{Storage, StorageError};
use crate::step::Step;
use keys::{SEP, backend, decode, encode, ordered, shop_prefix, step_prefix, timed_key};
use serde::de::DeserializeOwned;
use std::path::Path;

/// sled's page cache unless configured: enough for the hot decision log.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

pub struct SledStorage {
    db: sled::Db,
    state: sled::Tree,
    /// `shop \0 time id` -> decision: one insert per answer; retention
    /// walks it shop by shop.
    decisions: sled::Tree,
    refunds: sled::Tree,
    revisits: sled::Tree,
    /// id -> primary key of the revisit
    revisit_ids: sled::Tree,
    /// due time + id -> id, planned revisits only
    revisits_due: sled::Tree,
    outbox: sled::Tree,
    do_not_contact: sled::Tree,
    /// shop -> bytes of plugin state it keeps (when a quota is set)
    state_usage: sled::Tree,
    /// Bytes of state one shop may keep; 0: no quota.
    state_quota: u64,
    audit: sled::Tree,
    /// Component bytes by digest, in a store of their own.
    components: components::Components,
    versions: sled::Tree,
    active: sled::Tree,
}

impl SledStorage {
    /// Open (or create) the store in `dir`, with sled's default page cache
    /// (64 MiB here; sled's own default is 1 GiB).
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Open with a page cache of `cache_bytes`.
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(backend)?;
        let tree = |name: &str| db.open_tree(name).map_err(backend);
        // Stores written by earlier builds kept a second, global time
        // index of the decision log; retention no longer needs it.
        db.drop_tree("decisions_by_time").map_err(backend)?;
        // They also kept component bytes in the `blobs` tree.
        let components = components::Components::open(dir, &db, "blobs")?;
        Ok(SledStorage {
            state: tree("state")?,
            decisions: tree("decisions")?,
            refunds: tree("refunds")?,
            revisits: tree("revisits")?,
            revisit_ids: tree("revisit_ids")?,
            revisits_due: tree("revisits_due")?,
            outbox: tree("outbox")?,
            do_not_contact: tree("do_not_contact")?,
            state_usage: tree("state_usage")?,
            state_quota: 0,
            audit: tree("audit")?,
            components,
            versions: tree("versions")?,
            active: tree("active")?,
            db,
        })
    }

    fn newest<T: DeserializeOwned>(
        tree: &sled::Tree,
        shop: &str,
        limit: usize,
    ) -> Result<Vec<T>, StorageError> {
        tree.scan_prefix(shop_prefix(shop))
            .rev()
            .take(limit)
            .map(|item| decode(&item.map_err(backend)?.1))
            .collect()
    }
}

impl Storage for SledStorage {
    fn next_id(&self) -> Result<u64, StorageError> {
        self.db.generate_id().map_err(backend)
    }

    fn record_decision(&self, d: &Decision) -> Result<(), StorageError> {
        self.decisions
            .insert(timed_key(&d.shop, d.at_ms, d.id), encode(d)?)
            .map_err(backend)?;
        Ok(())
    }

    fn decisions(&self, q: &DecisionQuery) -> Result<Vec<Decision>, StorageError> {
        let start = timed_key(&q.shop, q.since_ms.unwrap_or(i64::MIN), 0);
        let end = match q.until_ms {
            Some(until) => timed_key(&q.shop, until, 0),
            None => {
                let mut end = shop_prefix(&q.shop);
                end.push(0xff);
                end
            }
        };
        let mut out = Vec::new();
        for item in self.decisions.range(start..end).rev() {
            let d: Decision = decode(&item.map_err(backend)?.1)?;
            if q.step.is_none_or(|s| s == d.step) {
                out.push(d);
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Each shop's keys are in time order: per shop, remove the range
    /// before the cutoff, then seek past the shop to the next one.
    fn prune_decisions(&self, before_ms: i64) -> Result<usize, StorageError> {
        let mut pruned = 0;
        let mut cursor = Vec::new();
        while let Some(item) = self.decisions.range(cursor.as_slice()..).next() {
            let (key, _) = item.map_err(backend)?;
            let Some(end_of_shop) = key.iter().position(|&b| b == SEP) else {
                return Err(StorageError::Corrupt(format!(
                    "decision key without a shop: {key:?}"
                )));
            };
            let prefix = &key[..=end_of_shop];
            let mut cutoff = prefix.to_vec();
            cutoff.extend_from_slice(&ordered(before_ms));
            for old in self.decisions.range(prefix..cutoff.as_slice()) {
                let (old, _) = old.map_err(backend)?;
                self.decisions.remove(old).map_err(backend)?;
                pruned += 1;
            }
            // `shop \x01` sorts after every `shop \0 ...` key and before
            // the next shop's (names hold no byte below 0x01).
            cursor = key[..end_of_shop].to_vec();
            cursor.push(SEP + 1);
        }
        Ok(pruned)
    }

    fn put_refund(&self, r: &RefundRecord) -> Result<(), StorageError> {
        self.refunds
            .insert(timed_key(&r.shop, r.at_ms, r.id), encode(r)?)
            .map_err(backend)?;
        Ok(())
    }

    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError> {
        Self::newest(&self.refunds, shop, limit)
    }

    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError> {
        for r in records {
            let key = timed_key(&r.shop, r.due_at, r.id);
            let id = r.id.to_be_bytes();
            // A changed due time moves the record: drop the old keys.
            if let Some(old) = self.revisit_ids.get(id).map_err(backend)? {
                if old.as_ref() != key.as_slice() {
                    self.revisits.remove(&old).map_err(backend)?;
                }
                let old_due = &old[old.len() - 16..old.len() - 8];
                let mut due_key = old_due.to_vec();
                due_key.extend_from_slice(&id);
                self.revisits_due.remove(due_key).map_err(backend)?;
            }
            let mut due_key = ordered(r.due_at).to_vec();
            due_key.extend_from_slice(&id);
            if r.status == "planned" {
                self.revisits_due.insert(due_key, &id).map_err(backend)?;
            }
            self.revisits
                .insert(key.as_slice(), encode(r)?)
                .map_err(backend)?;
            self.revisit_ids.insert(id, key).map_err(backend)?;
        }
        Ok(())
    }

    fn revisits(
        &self,
        shop: &str,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RevisitRecord>, StorageError> {
        let mut out = Vec::new();
        for item in self.revisits.scan_prefix(shop_prefix(shop)) {
            let r: RevisitRecord = decode(&item.map_err(backend)?.1)?;
            if status.is_none_or(|s| s == r.status) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn revisit(&self, id: u64) -> Result<Option<RevisitRecord>, StorageError> {
        let Some(key) = self.revisit_ids.get(id.to_be_bytes()).map_err(backend)? else {
            return Ok(None);
        };
        self.revisits
            .get(key)
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn due_revisits(&self, now: i64, limit: usize) -> Result<Vec<RevisitRecord>, StorageError> {
        let end = ordered(now.saturating_add(1)).to_vec();
        let mut out = Vec::new();
        for item in self.revisits_due.range(..end).take(limit) {
            let (_, id) = item.map_err(backend)?;
            let id = u64::from_be_bytes(
                id.as_ref()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("due index".into()))?,
            );
            if let Some(r) = self.revisit(id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StorageError> {
        for d in deliveries {
            self.outbox
                .insert(d.key.as_bytes(), encode(d)?)
                .map_err(backend)?;
        }
        Ok(())
    }

    fn deliveries_ready(&self, now_ms: i64, limit: usize) -> Result<Vec<Delivery>, StorageError> {
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            let d: Delivery = decode(&item.map_err(backend)?.1)?;
            if d.next_try_ms <= now_ms {
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn remove_delivery(&self, key: &str) -> Result<(), StorageError> {
        self.outbox.remove(key.as_bytes()).map_err(backend)?;
        Ok(())
    }

    fn set_do_not_contact(&self, shop: &str, customer: &str, on: bool) -> Result<(), StorageError> {
        let mut key = shop_prefix(shop);
        key.extend_from_slice(customer.as_bytes());
        if on {
            self.do_not_contact.insert(key, &[]).map_err(backend)?;
        } else {
            self.do_not_contact.remove(key).map_err(backend)?;
        }
        Ok(())
    }

    fn is_do_not_contact(&self, shop: &str, customer: &str) -> Result<bool, StorageError> {
        let mut key = shop_prefix(shop);
        key.extend_from_slice(customer.as_bytes());
        self.do_not_contact.contains_key(key).map_err(backend)
    }

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

    fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.components.put(digest, bytes)
    }

    fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
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

    fn flush(&self) -> Result<(), StorageError> {
        // Components are flushed as they are put (see `components`).
        self.db.flush().map(|_| ()).map_err(backend)
    }
}
