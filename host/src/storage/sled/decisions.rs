//! The decision log and refund records. A decision and what it records
//! (a refund, planned revisits) are one transaction; a decision alone is
//! one insert, the hot path of every answer.

use super::SledStorage;
use super::keys::{SEP, backend, decode, encode, ordered, shop_prefix, timed_key, transaction};
use crate::storage::{Decision, DecisionLog, DecisionQuery, Effects, RefundRecord, StorageError};
use sled::Transactional;

impl DecisionLog for SledStorage {
    fn record_decision(&self, d: &Decision, effects: &Effects) -> Result<(), StorageError> {
        let key = timed_key(&d.shop, d.at_ms, d.id);
        let value = encode(d)?;
        match effects {
            Effects::None => {
                self.decisions.insert(key, value).map_err(backend)?;
                Ok(())
            }
            Effects::Refund(r) => {
                let refund_key = timed_key(&r.shop, r.at_ms, r.id);
                let refund = encode(r)?;
                (&self.decisions, &self.refunds)
                    .transaction(|(decisions, refunds)| {
                        decisions.insert(key.as_slice(), value.as_slice())?;
                        self.fail_point("after-decision")?;
                        refunds.insert(refund_key.as_slice(), refund.as_slice())?;
                        Ok(())
                    })
                    .map_err(transaction)
            }
            Effects::Revisits(records) => (
                &self.decisions,
                &self.revisits,
                &self.revisit_ids,
                &self.revisits_due,
            )
                .transaction(|(decisions, revisits, ids, due)| {
                    decisions.insert(key.as_slice(), value.as_slice())?;
                    self.fail_point("after-decision")?;
                    for r in records {
                        self.put_revisit_tx((revisits, ids, due), r)?;
                    }
                    Ok(())
                })
                .map_err(transaction),
        }
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

    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError> {
        Self::newest(&self.refunds, shop, limit)
    }
}
