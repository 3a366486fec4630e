//! The decision log and refund records. A decision alone is one insert,
//! the hot path of every answer; a decision and what it records (a
//! refund, planned revisits) are written under an intent, all or nothing
//! across a crash (see [`Intent`]).

use super::keys::{SEP, backend, decode, encode, ordered, shop_prefix, timed_key, unordered};
use super::revisits::due_key;
use super::{Failure, SledStorage};
use crate::storage::{
    Decision, DecisionLog, DecisionQuery, Effects, RefundRecord, RevisitRecord, RevisitStatus,
    StorageError,
};
use serde::{Deserialize, Serialize};

/// What a decision with effects is about to write: every key it adds.
/// Written first and removed last, so that after a crash (sled recovers a
/// prefix of the writes) a leftover intent names a write that was cut
/// short: if its decision is there, all of it is; if not, what there is of
/// its effects is removed. Plain inserts, no transaction: sled 0.34's
/// transactions lock out every other writer in the process and roll the
/// log buffer twice, which cut refund decisions to a third at 64
/// connections (docs/PERFORMANCE.md).
#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    decision: Vec<u8>,
    refund: Option<Vec<u8>>,
    revisits: Vec<RevisitKeys>,
}

/// The keys of one new revisit: record, id index, due index (if planned).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RevisitKeys {
    pub id: u64,
    pub key: Vec<u8>,
    pub due: Option<Vec<u8>>,
}

impl RevisitKeys {
    pub(super) fn of(r: &RevisitRecord) -> Self {
        RevisitKeys {
            id: r.id,
            key: timed_key(&r.shop, r.due_at, r.id),
            due: (r.status == RevisitStatus::Planned)
                .then(|| due_key(&ordered(r.due_at), &r.id.to_be_bytes())),
        }
    }
}

impl SledStorage {
    /// Write `effects` and then the decision, under an intent.
    fn record_with_effects(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        id: u64,
        effects: &Effects,
    ) -> Result<(), StorageError> {
        let mut writes: Vec<(&sled::Tree, Vec<u8>, Vec<u8>)> = Vec::new();
        let mut intent = Intent {
            decision: key,
            refund: None,
            revisits: Vec::new(),
        };
        match effects {
            Effects::None => {}
            Effects::Refund(r) => {
                let refund_key = timed_key(&r.shop, r.at_ms, r.id);
                writes.push((&self.refunds, refund_key.clone(), encode(r)?));
                intent.refund = Some(refund_key);
            }
            Effects::Revisits(records) => {
                for r in records {
                    let keys = RevisitKeys::of(r);
                    let id = r.id.to_be_bytes().to_vec();
                    writes.push((&self.revisits, keys.key.clone(), encode(r)?));
                    writes.push((&self.revisit_ids, id.clone(), keys.key.clone()));
                    if let Some(due) = &keys.due {
                        writes.push((&self.revisits_due, due.clone(), id));
                    }
                    intent.revisits.push(keys);
                }
            }
        }
        let intent_key = id.to_be_bytes();
        self.intents
            .insert(intent_key, encode(&intent)?)
            .map_err(backend)?;
        let written = (|| {
            for (tree, k, v) in &writes {
                tree.insert(k.as_slice(), v.as_slice())
                    .map_err(|e| (backend(e), Failure::Error))?;
            }
            self.fail("after-effects")?;
            self.decisions
                .insert(intent.decision.as_slice(), value)
                .map_err(|e| (backend(e), Failure::Error))?;
            self.fail("after-decision")?;
            Ok(())
        })();
        match written {
            Ok(()) => {
                self.intents.remove(intent_key).map_err(backend)?;
                Ok(())
            }
            // The process is gone: what was written stays for `open`.
            Err((e, Failure::Crash)) => Err(e),
            // Settled now as `open` would; if that fails too, `open` will.
            Err((e, Failure::Error)) => {
                if let Err(settle) = self.settle(&intent_key, &intent) {
                    tracing::error!(error = %settle, "cannot settle a failed decision's effects; the next start will");
                }
                Err(e)
            }
        }
    }

    /// Settle one intent: a decision that is there has all its effects
    /// (they were written before it); one that is not was never answered,
    /// and what there is of its effects goes. Then the intent goes.
    fn settle(&self, key: &[u8], intent: &Intent) -> Result<(), StorageError> {
        if !self
            .decisions
            .contains_key(&intent.decision)
            .map_err(backend)?
        {
            self.undo(intent)?;
        }
        self.intents.remove(key).map_err(backend)?;
        Ok(())
    }

    /// Remove what a cut-short decision wrote of its effects.
    fn undo(&self, intent: &Intent) -> Result<(), StorageError> {
        if let Some(key) = &intent.refund {
            self.refunds.remove(key).map_err(backend)?;
        }
        for r in &intent.revisits {
            self.revisits.remove(&r.key).map_err(backend)?;
            self.revisit_ids
                .remove(r.id.to_be_bytes())
                .map_err(backend)?;
            if let Some(due) = &r.due {
                self.revisits_due.remove(due).map_err(backend)?;
            }
        }
        Ok(())
    }

    /// At open: settle every intent a crash left.
    pub(super) fn finish_intents(&self) -> Result<(), StorageError> {
        let mut settled = 0;
        for item in self.intents.iter() {
            let (key, value) = item.map_err(backend)?;
            self.settle(&key, &decode(&value)?)?;
            settled += 1;
        }
        if settled > 0 {
            tracing::warn!(settled, "decisions cut short by a crash settled");
            self.db.flush().map_err(backend)?;
        }
        Ok(())
    }
}

impl DecisionLog for SledStorage {
    fn record_decision(&self, d: &Decision, effects: &Effects) -> Result<(), StorageError> {
        let value = encode(d)?;
        match effects {
            // Most answers: one frame in the log's segments.
            Effects::None => self.log.append(d, &value)?,
            _ => {
                // The index first: an entry whose decision never came is
                // skipped when read, and pruned with the decisions of its
                // time.
                self.index(d)?;
                let key = timed_key(&d.shop, d.at_ms, d.id);
                self.record_with_effects(key, value, d.id, effects)?
            }
        }
        self.tally(d)
    }

    fn orders_confirmed(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<(i64, u64)>, StorageError> {
        let hour = |ms: i64| tally_key(shop, ms.div_euclid(HOUR_MS));
        let first = since_ms.div_euclid(HOUR_MS) + i64::from(since_ms.rem_euclid(HOUR_MS) != 0);
        let mut out = Vec::new();
        for item in self.tallies.range(hour(first * HOUR_MS)..hour(until_ms)) {
            let (key, value) = item.map_err(backend)?;
            let at = &key[key.len() - 8..];
            let h = unordered(at.try_into().expect("8 bytes"));
            out.push((h * HOUR_MS, count_of(&value)));
        }
        Ok(out)
    }

    /// Both homes of the log, merged: sled's (decisions that recorded
    /// more, the workflow's, earlier builds') and the segments'.
    fn decisions(&self, q: &DecisionQuery) -> Result<Vec<Decision>, StorageError> {
        let mut out = self.sled_decisions(q)?;
        out.extend(self.log.newest_first(q, &|d| matches(q, d))?);
        out.sort_unstable_by_key(|d| std::cmp::Reverse((d.at_ms, d.id)));
        out.truncate(q.limit);
        Ok(out)
    }

    fn scan_decisions(
        &self,
        q: &DecisionQuery,
        visit: &mut dyn FnMut(Decision) -> bool,
    ) -> Result<(), StorageError> {
        let matching = |d: &Decision| matches(q, d);
        let mut sled = self.decisions.range(time_range(q)).filter_map(|item| {
            item.map_err(backend)
                .and_then(|(_, v)| decode::<Decision>(&v))
                .map(|d| matches(q, &d).then_some(d))
                .transpose()
        });
        let mut log = self.log.oldest_first(q, &matching)?;
        let (mut a, mut b) = (sled.next().transpose()?, log.next()?);
        loop {
            let take_a = match (&a, &b) {
                (None, None) => return Ok(()),
                (Some(x), Some(y)) => (x.at_ms, x.id) <= (y.at_ms, y.id),
                (x, _) => x.is_some(),
            };
            let d = if take_a {
                std::mem::replace(&mut a, sled.next().transpose()?)
            } else {
                std::mem::replace(&mut b, log.next()?)
            };
            if !visit(d.expect("one of them is there")) {
                return Ok(());
            }
        }
    }

    /// Sled's entries, then the segments'.
    fn prune_decisions(&self, before_ms: i64) -> Result<usize, StorageError> {
        Ok(self.prune_sled_decisions(before_ms)? + self.log.prune(before_ms)?)
    }

    fn refunds(&self, shop: &str, limit: usize) -> Result<Vec<RefundRecord>, StorageError> {
        Self::newest(&self.refunds, shop, limit)
    }

    fn refunds_between(
        &self,
        shop: &str,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Vec<RefundRecord>, StorageError> {
        self.refunds
            .range(timed_key(shop, since_ms, 0)..timed_key(shop, until_ms, 0))
            .rev()
            .take(limit)
            .map(|item| decode(&item.map_err(backend)?.1))
            .collect()
    }
}

impl SledStorage {
    /// The decisions kept in sled matching `q`, newest first.
    fn sled_decisions(&self, q: &DecisionQuery) -> Result<Vec<Decision>, StorageError> {
        if let Some(subject) = indexed(q) {
            return self.decisions_of(q, subject);
        }
        let mut out = Vec::new();
        let scan_limit = q.scan_limit.unwrap_or(usize::MAX);
        for item in self.decisions.range(time_range(q)).rev().take(scan_limit) {
            let value = item.map_err(backend)?.1;
            // The step and version first: most entries a filtered search
            // passes over are not decoded whole.
            if q.step.is_some() || q.version.is_some() {
                let head: Head = decode(&value)?;
                if q.step.is_some_and(|s| s != head.step)
                    || q.version.is_some_and(|v| v != head.version)
                {
                    continue;
                }
            }
            let d: Decision = decode(&value)?;
            if matches(q, &d) {
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
    fn prune_sled_decisions(&self, before_ms: i64) -> Result<usize, StorageError> {
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
        self.prune_subjects(before_ms)?;
        Ok(pruned)
    }
}

/// The keys of a query's shop and time window.
fn time_range(q: &DecisionQuery) -> std::ops::Range<Vec<u8>> {
    let start = timed_key(&q.shop, q.since_ms.unwrap_or(i64::MIN), 0);
    let end = match q.until_ms {
        Some(until) => timed_key(&q.shop, until, 0),
        None => {
            let mut end = shop_prefix(&q.shop);
            end.push(0xff);
            end
        }
    };
    start..end
}

/// Whether a decision of the window matches the query's step, version,
/// customer and order.
fn matches(q: &DecisionQuery, d: &Decision) -> bool {
    q.step.is_none_or(|s| s == d.step)
        && q.version.is_none_or(|v| v == d.version)
        && q.customer
            .as_ref()
            .is_none_or(|c| d.customer_id().as_ref() == Some(c))
        && q.order.as_ref().is_none_or(|o| d.order.as_ref() == Some(o))
}

const HOUR_MS: i64 = 3_600_000;

/// `shop \0 hour`: an hour's tally of a shop.
fn tally_key(shop: &str, hour: i64) -> Vec<u8> {
    let mut key = shop_prefix(shop);
    key.extend_from_slice(&ordered(hour));
    key
}

fn count_of(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_be_bytes).unwrap_or(0)
}

/// The tallies' merge: add the counts.
pub(super) fn add_counts(_key: &[u8], old: Option<&[u8]>, more: &[u8]) -> Option<Vec<u8>> {
    let sum = old.map_or(0, count_of) + count_of(more);
    Some(sum.to_be_bytes().to_vec())
}

impl SledStorage {
    /// Count a decision in the hourly tallies: an order confirmation that
    /// answered is an order confirmed. Beside the decision, not atomic
    /// with it: a crash before both are durable may lose one count or
    /// keep one of an answer never given (a figure for people, not an
    /// account).
    pub(super) fn tally(&self, d: &Decision) -> Result<(), StorageError> {
        if d.step == crate::steps::Step::OrderConfirmation && d.error.is_none() {
            self.tallies
                .merge(
                    tally_key(&d.shop, d.at_ms.div_euclid(HOUR_MS)),
                    1u64.to_be_bytes(),
                )
                .map_err(backend)?;
        }
        Ok(())
    }
}

/// What a filtered search reads of an entry before deciding to decode it.
#[derive(Deserialize)]
struct Head {
    step: crate::steps::Step,
    version: u64,
}

/// Which index kind: by customer or by order.
const CUSTOMER: u8 = b'c';
const ORDER: u8 = b'o';

/// `shop \0 kind len subject`: the prefix of one subject's index keys
/// (the length, not a separator, ends the subject: ids may hold any byte).
fn subject_prefix(shop: &str, kind: u8, subject: &str) -> Vec<u8> {
    let mut key = shop_prefix(shop);
    key.push(kind);
    let len = u16::try_from(subject.len()).unwrap_or(u16::MAX);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&subject.as_bytes()[..usize::from(len)]);
    key
}

/// The index keys of `d`: its customer, and its order if it has one.
pub(super) fn subject_keys(d: &Decision) -> Vec<Vec<u8>> {
    let subjects = d
        .customer_id()
        .map(|c| (CUSTOMER, c))
        .into_iter()
        .chain(d.order.clone().map(|o| (ORDER, o)));
    subjects
        .map(|(kind, subject)| {
            let mut key = subject_prefix(&d.shop, kind, &subject);
            key.extend_from_slice(&ordered(d.at_ms));
            key.extend_from_slice(&d.id.to_be_bytes());
            key
        })
        .collect()
}

/// The subject a query can read from the index: its order, else its
/// customer.
fn indexed(q: &DecisionQuery) -> Option<(u8, &str)> {
    q.order
        .as_deref()
        .map(|o| (ORDER, o))
        .or(q.customer.as_deref().map(|c| (CUSTOMER, c)))
}

impl SledStorage {
    /// A query for one customer or order, read from the index: newest
    /// first, each entry of the window looked up by its key.
    fn decisions_of(
        &self,
        q: &DecisionQuery,
        (kind, subject): (u8, &str),
    ) -> Result<Vec<Decision>, StorageError> {
        let prefix = subject_prefix(&q.shop, kind, subject);
        let bound = |t: i64| {
            let mut k = prefix.clone();
            k.extend_from_slice(&ordered(t));
            k
        };
        let start = bound(q.since_ms.unwrap_or(i64::MIN));
        let end = match q.until_ms {
            Some(until) => bound(until),
            None => {
                let mut k = prefix.clone();
                k.extend_from_slice(&[0xff; 17]);
                k
            }
        };
        let mut out = Vec::new();
        for item in self.decision_subjects.range(start..end).rev() {
            let (key, _) = item.map_err(backend)?;
            let tail = &key[prefix.len()..];
            if tail.len() != 16 {
                continue;
            }
            let at = unordered(tail[..8].try_into().expect("8 bytes"));
            let id = u64::from_be_bytes(tail[8..].try_into().expect("8 bytes"));
            let Some(value) = self
                .decisions
                .get(timed_key(&q.shop, at, id))
                .map_err(backend)?
            else {
                continue; // pruned, or never written
            };
            let d: Decision = decode(&value)?;
            if matches(q, &d) {
                out.push(d);
                if out.len() >= q.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Index `d` by its buyer and its order.
    fn index(&self, d: &Decision) -> Result<(), StorageError> {
        for key in subject_keys(d) {
            self.decision_subjects.insert(key, &[]).map_err(backend)?;
        }
        Ok(())
    }

    /// Remove index entries of decisions older than `before_ms` (the time
    /// is in the key: no decision is read).
    fn prune_subjects(&self, before_ms: i64) -> Result<(), StorageError> {
        let cutoff = ordered(before_ms);
        for item in self.decision_subjects.iter() {
            let (key, _) = item.map_err(backend)?;
            if key.len() >= 16 && key[key.len() - 16..key.len() - 8] < cutoff[..] {
                self.decision_subjects.remove(key).map_err(backend)?;
            }
        }
        Ok(())
    }

    /// At open: a store written before the index existed gets one built
    /// (once: a store with decisions has index entries after it).
    pub(super) fn index_old_decisions(&self) -> Result<(), StorageError> {
        // The marker sorts before every shop's keys (no shop is named "").
        const INDEXED: &[u8] = &[SEP, b'!'];
        if self
            .decision_subjects
            .contains_key(INDEXED)
            .map_err(backend)?
        {
            return Ok(());
        }
        let mut indexed = 0u64;
        for item in self.decisions.iter() {
            let (_, value) = item.map_err(backend)?;
            self.index(&decode(&value)?)?;
            indexed += 1;
        }
        self.decision_subjects
            .insert(INDEXED, &[])
            .map_err(backend)?;
        if indexed > 0 {
            tracing::info!(
                decisions = indexed,
                "decision log indexed by customer and order"
            );
        }
        self.db.flush().map_err(backend)?;
        Ok(())
    }
}
