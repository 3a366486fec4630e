//! Revisits and their due-time index, the do-not-contact list and the
//! webhook outbox. A revisit's move between indexes is one transaction,
//! and so are revisits fired together with their webhooks.

use super::SledStorage;
use super::keys::{
    backend, decode, encode, encode_tx, ordered, shop_prefix, timed_key, transaction,
};
use crate::storage::{
    Delivery, Outbox, OutboxStats, RevisitRecord, RevisitStatus, RevisitStore, StorageError,
};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

/// The revisit trees inside a transaction: records, id -> key, due index.
pub(super) type RevisitTrees<'a> = (
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
);

/// `due time, id`: the due index's key.
pub(super) fn due_key(due: &[u8], id: &[u8; 8]) -> Vec<u8> {
    let mut key = due.to_vec();
    key.extend_from_slice(id);
    key
}

impl SledStorage {
    /// Write one revisit inside a transaction: drop its old keys (a changed
    /// due time moves the record), index it by due time if planned.
    pub(super) fn put_revisit_tx(
        &self,
        (revisits, ids, due): RevisitTrees<'_>,
        r: &RevisitRecord,
    ) -> Result<(), ConflictableTransactionError<StorageError>> {
        let key = timed_key(&r.shop, r.due_at, r.id);
        let id = r.id.to_be_bytes();
        if let Some(old) = ids.get(id)? {
            if old.as_ref() != key.as_slice() {
                revisits.remove(old.as_ref())?;
            }
            due.remove(due_key(&old[old.len() - 16..old.len() - 8], &id))?;
            self.fail_point("revisit-unindexed")?;
        }
        if r.status == RevisitStatus::Planned {
            due.insert(due_key(&ordered(r.due_at), &id), &id)?;
        }
        revisits.insert(key.as_slice(), encode_tx(r)?)?;
        ids.insert(&id, key.as_slice())?;
        Ok(())
    }
}

impl RevisitStore for SledStorage {
    fn put_revisits(&self, records: &[RevisitRecord]) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        (&self.revisits, &self.revisit_ids, &self.revisits_due)
            .transaction(|(revisits, ids, due)| {
                for r in records {
                    self.put_revisit_tx((revisits, ids, due), r)?;
                }
                Ok(())
            })
            .map_err(transaction)
    }

    fn fire_revisits(
        &self,
        records: &[RevisitRecord],
        deliveries: &[Delivery],
    ) -> Result<(), StorageError> {
        let queued = deliveries
            .iter()
            .map(|d| Ok((d.key.as_bytes(), encode(d)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        (
            &self.revisits,
            &self.revisit_ids,
            &self.revisits_due,
            &self.outbox,
        )
            .transaction(|(revisits, ids, due, outbox)| {
                for (key, value) in &queued {
                    outbox.insert(*key, value.as_slice())?;
                }
                self.fail_point("webhooks-queued")?;
                for r in records {
                    self.put_revisit_tx((revisits, ids, due), r)?;
                }
                Ok(())
            })
            .map_err(transaction)
    }

    fn revisits(
        &self,
        shop: &str,
        status: Option<RevisitStatus>,
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

    fn revisits_due_before(&self, before: i64) -> Result<u64, StorageError> {
        let end = ordered(before).to_vec();
        let mut n = 0;
        for item in self.revisits_due.range(..end) {
            item.map_err(backend)?;
            n += 1;
        }
        Ok(n)
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
}

impl Outbox for SledStorage {
    fn put_deliveries(&self, deliveries: &[Delivery]) -> Result<(), StorageError> {
        for d in deliveries {
            self.outbox
                .insert(d.key.as_bytes(), encode(d)?)
                .map_err(backend)?;
        }
        Ok(())
    }

    fn deliveries_ready(
        &self,
        now_ms: i64,
        per_shop: usize,
        limit: usize,
    ) -> Result<Vec<Delivery>, StorageError> {
        let mut out = Vec::new();
        let mut of_shop = std::collections::HashMap::<String, usize>::new();
        for item in self.outbox.iter() {
            let d: Delivery = decode(&item.map_err(backend)?.1)?;
            if d.dead || d.next_try_ms > now_ms {
                continue;
            }
            let n = of_shop.entry(d.shop.clone()).or_default();
            if *n < per_shop {
                *n += 1;
                out.push(d);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn deliveries(&self, shop: &str) -> Result<Vec<Delivery>, StorageError> {
        let mut out = Vec::new();
        for item in self.outbox.iter() {
            let d: Delivery = decode(&item.map_err(backend)?.1)?;
            if d.shop == shop {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn delivery(&self, key: &str) -> Result<Option<Delivery>, StorageError> {
        self.outbox
            .get(key.as_bytes())
            .map_err(backend)?
            .map(|v| decode(&v))
            .transpose()
    }

    fn outbox_stats(&self) -> Result<OutboxStats, StorageError> {
        let mut stats = OutboxStats::default();
        for item in self.outbox.iter() {
            let d: Delivery = decode(&item.map_err(backend)?.1)?;
            if d.dead {
                stats.dead += 1;
                continue;
            }
            stats.queued += 1;
            if d.queued_ms > 0 {
                let oldest = stats.oldest_queued_ms.get_or_insert(d.queued_ms);
                *oldest = (*oldest).min(d.queued_ms);
            }
        }
        Ok(stats)
    }

    fn remove_delivery(&self, key: &str) -> Result<(), StorageError> {
        self.outbox.remove(key.as_bytes()).map_err(backend)?;
        Ok(())
    }
}
