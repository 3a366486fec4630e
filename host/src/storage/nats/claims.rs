//! Claims on keys of a NATS key-value bucket whose entries expire: a
//! node holds one while it renews it (compare-and-swap on the entry's
//! revision), and loses it when it stops renewing (killed, cut off) for
//! the bucket's age. Two kinds: a node's slot (a number 0..16 that makes
//! its record ids unique, see [`Ids`]) and the lease of the node that
//! runs the shared background work (revisits, timers, the workflow
//! inbox, webhooks, retention).

use async_nats::jetstream::kv;
use bytes::Bytes;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

/// How long a claim lives unless renewed.
pub const LEASE_FOR: Duration = Duration::from_secs(4);
/// How often a holder renews its claims, and a node without the lease
/// tries to take it.
pub const RENEW_EVERY: Duration = Duration::from_millis(1000);
/// Node slots: ids keep 4 bits for them.
pub const SLOTS: u8 = 16;
/// No slot held.
const NO_SLOT: u8 = u8::MAX;

/// The claims one node holds.
pub struct Claims {
    pub(super) bucket: kv::Store,
    /// What the node writes into its claims: its name.
    pub(super) name: String,
    /// The slot held and its entry's revision.
    slot: AtomicU8,
    slot_revision: Mutex<u64>,
    /// The lease's entry revision, while held.
    lease: Mutex<Option<u64>>,
    leads: AtomicBool,
}

impl Claims {
    pub fn new(bucket: kv::Store, name: String) -> Self {
        Claims {
            bucket,
            name,
            slot: AtomicU8::new(NO_SLOT),
            slot_revision: Mutex::new(0),
            lease: Mutex::new(None),
            leads: AtomicBool::new(false),
        }
    }

    /// The slot this node holds, if it holds one.
    pub fn slot(&self) -> Option<u8> {
        let s = self.slot.load(Ordering::Acquire);
        (s != NO_SLOT).then_some(s)
    }

    /// Whether this node holds the lease.
    pub fn leads(&self) -> bool {
        self.leads.load(Ordering::Acquire)
    }

    /// Take the first free slot.
    pub async fn take_slot(&self) -> bool {
        for n in 0..SLOTS {
            if let Ok(rev) = self
                .bucket
                .create(format!("slot-{n}"), Bytes::from(self.name.clone()))
                .await
            {
                *self.slot_revision.lock().unwrap_or_else(|e| e.into_inner()) = rev;
                self.slot.store(n, Ordering::Release);
                return true;
            }
        }
        false
    }

    /// Renew what is held, try to take what is not (the slot, the lease);
    /// once per [`RENEW_EVERY`].
    pub async fn renew(&self) {
        match self.slot() {
            Some(n) => {
                let rev = *self.slot_revision.lock().unwrap_or_else(|e| e.into_inner());
                match self
                    .bucket
                    .update(format!("slot-{n}"), Bytes::from(self.name.clone()), rev)
                    .await
                {
                    Ok(rev) => *self.slot_revision.lock().unwrap_or_else(|e| e.into_inner()) = rev,
                    Err(e) => {
                        tracing::error!(slot = n, error = %e, "lost this node's id slot: no new records until one is taken again");
                        self.slot.store(NO_SLOT, Ordering::Release);
                    }
                }
            }
            None => {
                if !self.take_slot().await {
                    tracing::error!("no free id slot: {SLOTS} nodes hold them all");
                }
            }
        }
        let held = *self.lease.lock().unwrap_or_else(|e| e.into_inner());
        let next = match held {
            Some(rev) => self
                .bucket
                .update("lease", Bytes::from(self.name.clone()), rev)
                .await
                .ok(),
            None => self
                .bucket
                .create("lease", Bytes::from(self.name.clone()))
                .await
                .ok(),
        };
        if next.is_some() != held.is_some() {
            if next.is_some() {
                tracing::info!(node = %self.name, "this node now runs the shared background work");
            } else {
                tracing::warn!(node = %self.name, "this node lost the lease of the shared background work");
            }
        }
        *self.lease.lock().unwrap_or_else(|e| e.into_inner()) = next;
        self.leads.store(next.is_some(), Ordering::Release);
    }

    /// Give the claims back (a clean stop): another node takes the lease
    /// at once instead of after [`LEASE_FOR`].
    pub async fn release(&self) {
        self.leads.store(false, Ordering::Release);
        let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(rev) = lease {
            let _ = self.bucket.delete_expect_revision("lease", Some(rev)).await;
        }
        if let Some(n) = self.slot() {
            let rev = *self.slot_revision.lock().unwrap_or_else(|e| e.into_inner());
            let _ = self
                .bucket
                .delete_expect_revision(format!("slot-{n}"), Some(rev))
                .await;
        }
    }
}

/// Record ids unique across the nodes and increasing with time: unix ms
/// since 2026 (41 bits), the node's slot (4 bits), a count within the ms
/// (8 bits) — 53 bits, so a JavaScript number holds one exactly.
pub struct Ids {
    last: Mutex<u64>,
}

/// 2026-01-01T00:00:00Z, unix ms.
const EPOCH_MS: i64 = 1_767_225_600_000;

impl Ids {
    pub fn new() -> Self {
        Ids {
            last: Mutex::new(0),
        }
    }

    /// The next id of the node in `slot`.
    pub fn next(&self, slot: u8, now_ms: i64) -> u64 {
        // (ms << 8 | count): increasing even when the clock steps back.
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let at = ((now_ms - EPOCH_MS).max(0) as u64) << 8;
        *last = (*last + 1).max(at);
        let (ms, count) = (*last >> 8, *last & 0xff);
        (ms << 12) | (u64::from(slot) << 8) | count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_and_differ_between_slots() {
        let ids = Ids::new();
        let now = 1_790_000_000_000;
        let a: Vec<u64> = (0..600).map(|_| ids.next(3, now)).collect();
        assert!(
            a.windows(2).all(|w| w[0] < w[1]),
            "increasing within one ms and past it"
        );
        assert!(*a.last().unwrap() < 1 << 53, "fits a JavaScript number");
        let other = Ids::new();
        let b: Vec<u64> = (0..600).map(|_| other.next(4, now)).collect();
        assert!(a.iter().all(|x| !b.contains(x)), "slots never meet");
        // A later ms on another node gives a larger id than this node's
        // earlier ones: ids follow time across nodes.
        assert!(other.next(0, now + 10) > a[255]);
        // The clock stepping back does not make ids go back.
        let before = ids.next(3, now);
        assert!(ids.next(3, now - 5_000) > before);
    }
}
