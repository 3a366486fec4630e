//! Calls and errors of the last hour, by minute: what the console's
//! overview shows of each shop step without reading the decision log.
//! Atomics only (a call adds to its minute's bucket); a bucket older than
//! an hour is reset by the first call that lands in its slot.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

const MINUTES: usize = 60;

/// One minute's counts.
#[derive(Default)]
struct Bucket {
    /// The minute (unix seconds / 60) these counts are of.
    minute: AtomicI64,
    calls: AtomicU64,
    errors: AtomicU64,
}

/// The last hour of one plugin's calls. The buckets (1.4 KB) are made at
/// the first call: most plugins of 10,000 shops are not called soon, and
/// 50,000 sets of them took 72 MB at start.
#[derive(Default)]
pub struct Recent {
    buckets: std::sync::OnceLock<Box<[Bucket; MINUTES]>>,
}

impl Recent {
    /// Count a call at `now_secs`.
    pub fn count(&self, now_secs: i64, ok: bool) {
        let minute = now_secs.div_euclid(60);
        let buckets = self
            .buckets
            .get_or_init(|| Box::new(std::array::from_fn(|_| Bucket::default())));
        let bucket = &buckets[minute.rem_euclid(MINUTES as i64) as usize];
        let seen = bucket.minute.load(Ordering::Relaxed);
        if seen != minute
            && bucket
                .minute
                .compare_exchange(seen, minute, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // A call racing this reset may be lost: the figure is a gauge
            // for people, not an account.
            bucket.calls.store(0, Ordering::Relaxed);
            bucket.errors.store(0, Ordering::Relaxed);
        }
        bucket.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            bucket.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Calls and errors in the hour up to `now_secs`.
    pub fn last_hour(&self, now_secs: i64) -> (u64, u64) {
        let now = now_secs.div_euclid(60);
        let Some(buckets) = self.buckets.get() else {
            return (0, 0);
        };
        buckets
            .iter()
            .filter(|b| {
                let m = b.minute.load(Ordering::Relaxed);
                m > now - MINUTES as i64 && m <= now
            })
            .fold((0, 0), |(c, e), b| {
                (
                    c + b.calls.load(Ordering::Relaxed),
                    e + b.errors.load(Ordering::Relaxed),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Recent;

    #[test]
    fn a_plugin_never_called_keeps_no_buckets() {
        let recent = Recent::default();
        assert!(std::mem::size_of::<Recent>() <= 16);
        assert_eq!(recent.last_hour(1_800_000_000), (0, 0));
        assert!(recent.buckets.get().is_none());
    }

    #[test]
    fn counts_the_last_hour_only() {
        let recent = Recent::default();
        let t = 1_800_000_000;
        recent.count(t - 3_700, true); // more than an hour ago
        recent.count(t - 120, true);
        recent.count(t - 60, false);
        recent.count(t, true);
        assert_eq!(recent.last_hour(t), (3, 1));
        // Its slot reused an hour later: the old counts are gone.
        recent.count(t + 3_600, true);
        assert_eq!(recent.last_hour(t + 3_600), (1, 0));
        assert_eq!(recent.last_hour(t + 2 * 3_600), (0, 0));
    }
}
