//! Start-up progress: how many shop folders are loaded of how many, and
//! which one is loading, for `/readyz`, the log and callers that arrive
//! before the shops are served.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// A shop that takes this long to load is logged at info.
const SLOW_MS: u64 = 100;

/// Where loading the shop folders stands.
#[derive(Default)]
pub struct Progress {
    total: AtomicUsize,
    done: AtomicUsize,
    loading: Mutex<Option<String>>,
    /// Every shop folder is loaded.
    loaded: AtomicBool,
    /// Loaded, and the transport listens.
    ready: AtomicBool,
}

/// A snapshot of [`Progress`] while starting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Starting {
    pub done: usize,
    pub total: usize,
    /// The shop folder being loaded now, if any.
    pub loading: Option<String>,
}

impl std::fmt::Display for Starting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.total == 0 {
            return f.write_str("reading the shops folder");
        }
        write!(f, "{} of {} shops loaded", self.done, self.total)?;
        if let Some(shop) = &self.loading {
            write!(f, ", loading {shop}")?;
        }
        Ok(())
    }
}

impl Progress {
    /// `total` shop folders are about to load.
    pub fn begin(&self, total: usize) {
        self.total.store(total, Ordering::Relaxed);
        tracing::info!(shops = total, "loading shops");
    }

    /// Shop `id` starts loading.
    pub fn loading(&self, id: &str) {
        *self.loading.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.to_string());
    }

    /// Shop `id` is loaded (or failed to load), after `since`. Logged at
    /// info when it took a while (it compiled something) and at each tenth
    /// of the way, at debug otherwise: 10,000 shops are not 10,000 lines.
    pub fn loaded(&self, id: &str, since: Instant) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        *self.loading.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let total = self.total.load(Ordering::Relaxed);
        let ms = since.elapsed().as_millis() as u64;
        let tenth = total >= 10 && done.is_multiple_of(total / 10);
        if ms >= SLOW_MS || tenth || total < 10 {
            tracing::info!(shop = %id, done, total, ms, "shop loaded");
        } else {
            tracing::debug!(shop = %id, done, total, ms, "shop loaded");
        }
    }

    /// Every shop folder is loaded (or failed to).
    pub fn finish(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Every shop is loaded and the transport listens.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// How far loading got, while it goes on.
    pub fn starting(&self) -> Option<Starting> {
        if self.loaded.load(Ordering::Acquire) {
            return None;
        }
        Some(Starting {
            done: self.done.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            loading: self
                .loading
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_shops_until_ready() {
        let p = Progress::default();
        assert_eq!(
            p.starting().unwrap().to_string(),
            "reading the shops folder"
        );
        p.begin(2);
        p.loading("tea-oil");
        assert_eq!(
            p.starting().unwrap().to_string(),
            "0 of 2 shops loaded, loading tea-oil"
        );
        p.loaded("tea-oil", Instant::now());
        assert_eq!(p.starting().unwrap().to_string(), "1 of 2 shops loaded");
        p.finish();
        assert_eq!(p.starting(), None);
    }
}
