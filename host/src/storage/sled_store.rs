//! The embedded backend: sled 0.34.

use super::records::{
    AuditEvent, Decision, DecisionQuery, Delivery, RefundRecord, RevisitRecord, VersionRecord,
};
use super::{Storage, StorageError};
use crate::state::{StateError, StateScope, StateStore};
use crate::step::Step;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// sled's page cache unless configured: enough for the hot decision log.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// Separator between key parts; shop and plugin names never contain it.
const SEP: u8 = 0;

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
    blobs: sled::Tree,
    versions: sled::Tree,
    active: sled::Tree,
}

fn backend(e: sled::Error) -> StorageError {
    StorageError::Backend(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(value).map_err(|e| StorageError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(e.to_string()))
}

/// `shop \0`, the prefix of a shop's keys.
fn shop_prefix(shop: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(shop.len() + 1);
    key.extend_from_slice(shop.as_bytes());
    key.push(SEP);
    key
}

/// Order-preserving encoding of a signed number.
fn ordered(n: i64) -> [u8; 8] {
    ((n as u64) ^ (1 << 63)).to_be_bytes()
}

/// `shop \0 time id`: a shop's records in time order.
fn timed_key(shop: &str, time: i64, id: u64) -> Vec<u8> {
    let mut key = shop_prefix(shop);
    key.extend_from_slice(&ordered(time));
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// `shop \0 step \0`: a shop step's keys.
fn step_prefix(shop: &str, step: Step) -> Vec<u8> {
    let mut key = shop_prefix(shop);
    key.extend_from_slice(step.world().as_bytes());
    key.push(SEP);
    key
}

fn state_key(scope: &StateScope, key: &str) -> Vec<u8> {
    let mut k = shop_prefix(&scope.shop);
    k.extend_from_slice(scope.plugin.as_bytes());
    k.push(SEP);
    k.extend_from_slice(key.as_bytes());
    k
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
            blobs: tree("blobs")?,
            versions: tree("versions")?,
            active: tree("active")?,
            db,
        })
    }

    /// Cap the plugin state (keys + values) each shop may keep.
    pub fn with_state_quota(mut self, bytes: u64) -> Self {
        self.state_quota = bytes;
        self
    }

    /// Add `delta` bytes to a shop's state usage, refusing to pass the
    /// quota. (Two writes of one shop racing may pass it by one value.)
    fn account(&self, shop: &str, delta: i64) -> Result<(), StateError> {
        if self.state_quota == 0 {
            return Ok(());
        }
        let key = shop_prefix(shop);
        let used = self
            .state_usage
            .get(&key)
            .map_err(state_err)?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0);
        let next = (used as i64 + delta).max(0) as u64;
        if delta > 0 && next > self.state_quota {
            return Err(StateError::QuotaExceeded(format!(
                "shop `{shop}` would keep {next} bytes of plugin state, over its quota of {}",
                self.state_quota
            )));
        }
        self.state_usage
            .insert(key, &next.to_be_bytes())
            .map_err(state_err)?;
        Ok(())
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
        if !self.blobs.contains_key(digest).map_err(backend)? {
            self.blobs.insert(digest, bytes).map_err(backend)?;
        }
        Ok(())
    }

    fn blob(&self, digest: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.blobs.get(digest).map_err(backend)?.map(|v| v.to_vec()))
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
        self.db.flush().map(|_| ()).map_err(backend)
    }
}

fn state_err(e: sled::Error) -> StateError {
    StateError::Unavailable(e.to_string())
}

impl StateStore for SledStorage {
    fn get(&self, scope: &StateScope, key: &str) -> Result<Option<String>, StateError> {
        let value = self.state.get(state_key(scope, key)).map_err(state_err)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set(&self, scope: &StateScope, key: &str, value: &str) -> Result<(), StateError> {
        if self.state_quota > 0 {
            let k = state_key(scope, key);
            let old = self
                .state
                .get(&k)
                .map_err(state_err)?
                .map_or(0, |v| (v.len() + key.len()) as i64);
            self.account(&scope.shop, (key.len() + value.len()) as i64 - old)?;
        }
        self.state
            .insert(state_key(scope, key), value.as_bytes())
            .map_err(state_err)?;
        Ok(())
    }

    fn delete(&self, scope: &StateScope, key: &str) -> Result<bool, StateError> {
        if self.state_quota > 0
            && let Some(old) = self.state.get(state_key(scope, key)).map_err(state_err)?
        {
            self.account(&scope.shop, -((old.len() + key.len()) as i64))?;
        }
        Ok(self
            .state
            .remove(state_key(scope, key))
            .map_err(state_err)?
            .is_some())
    }

    fn list_keys(
        &self,
        scope: &StateScope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        let base = state_key(scope, "");
        self.state
            .scan_prefix(state_key(scope, prefix))
            .keys()
            .take(limit)
            .map(|k| {
                let k = k.map_err(state_err)?;
                Ok(String::from_utf8_lossy(&k[base.len()..]).into_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Step;

    fn decision(store: &SledStorage, shop: &str, step: Step, at_ms: i64) -> Decision {
        let d = Decision {
            id: store.next_id().unwrap(),
            shop: shop.into(),
            step,
            digest: "d".into(),
            version: 0,
            at_ms,
            now: at_ms / 1000,
            input: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            output: None,
            error: None,
            duration_us: 1,
        };
        store.record_decision(&d).unwrap();
        d
    }

    #[test]
    fn decisions_by_shop_step_and_time_and_pruning() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap();
        for t in 1..=5 {
            decision(&store, "a", Step::Greeting, t * 1000);
            decision(&store, "a", Step::RefundPolicy, t * 1000 + 1);
            decision(&store, "ab", Step::Greeting, t * 1000);
        }
        let q = |step, since, until| DecisionQuery {
            shop: "a".into(),
            step,
            since_ms: since,
            until_ms: until,
            limit: 100,
        };
        assert_eq!(
            store.decisions(&q(None, None, None)).unwrap().len(),
            10,
            "shop `ab` is not `a`"
        );
        let greet = store
            .decisions(&q(Some(Step::Greeting), Some(2000), Some(4000)))
            .unwrap();
        let times: Vec<i64> = greet.iter().map(|d| d.at_ms).collect();
        assert_eq!(times, [3000, 2000], "newest first, until exclusive");
        // Before 3000: a's 1000, 1001, 2000, 2001 and ab's 1000, 2000.
        assert_eq!(store.prune_decisions(3000).unwrap(), 6);
        let times = |shop: &str| -> Vec<i64> {
            let mut q = q(None, None, None);
            q.shop = shop.into();
            store
                .decisions(&q)
                .unwrap()
                .iter()
                .map(|d| d.at_ms)
                .collect()
        };
        assert_eq!(times("a"), [5001, 5000, 4001, 4000, 3001, 3000]);
        assert_eq!(times("ab"), [5000, 4000, 3000]);
        assert_eq!(
            store.prune_decisions(3000).unwrap(),
            0,
            "nothing left to prune"
        );
    }

    #[test]
    fn the_old_decision_time_index_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let old = db.open_tree("decisions_by_time").unwrap();
            old.insert(b"k", b"v").unwrap();
            db.flush().unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert!(
            !store
                .db
                .tree_names()
                .iter()
                .any(|n| n.as_ref() == b"decisions_by_time")
        );
    }

    #[test]
    fn state_quota_counts_keys_and_values_per_shop() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStorage::open(dir.path()).unwrap().with_state_quota(100);
        let a = StateScope {
            shop: "a".into(),
            plugin: "p".into(),
        };
        let a2 = StateScope {
            shop: "a".into(),
            plugin: "q".into(),
        };
        let b = StateScope {
            shop: "b".into(),
            plugin: "p".into(),
        };
        store.set(&a, "k1", &"x".repeat(58)).unwrap(); // 60 bytes
        let err = store.set(&a2, "k2", &"x".repeat(58)).unwrap_err();
        assert!(
            matches!(&err, StateError::QuotaExceeded(m) if m.contains("120 bytes")),
            "{err}"
        );
        store.set(&b, "k2", &"x".repeat(58)).unwrap();
        store.set(&a, "k1", "small").unwrap(); // overwrite: 7 bytes now
        store.set(&a2, "k2", &"x".repeat(58)).unwrap();
        assert!(store.delete(&a2, "k2").unwrap());
        store.set(&a2, "k3", &"x".repeat(88)).unwrap(); // 7 + 90 = 97
    }

    #[test]
    fn state_is_scoped_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let a = StateScope {
            shop: "a".into(),
            plugin: "p".into(),
        };
        let b = StateScope {
            shop: "b".into(),
            plugin: "p".into(),
        };
        {
            let store = SledStorage::open(dir.path()).unwrap();
            store.set(&a, "k1", "v1").unwrap();
            store.set(&a, "k2", "v2").unwrap();
            store.set(&b, "k1", "other").unwrap();
            Storage::flush(&store).unwrap();
        }
        let store = SledStorage::open(dir.path()).unwrap();
        assert_eq!(store.get(&a, "k1").unwrap().as_deref(), Some("v1"));
        assert_eq!(store.list_keys(&a, "k", 10).unwrap(), ["k1", "k2"]);
        assert_eq!(store.get(&b, "k2").unwrap(), None);
    }
}
