//! The `clock` interface, and WASI's clocks: both stopped at the call's
//! time, so a call is reproducible from its input and time.

use crate::bindings::{clock, types::Timestamp};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wasmtime::component::HasSelf;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The call's time (unix seconds), shared with WASI's clocks.
pub struct ClockCtx {
    now: Arc<AtomicI64>,
}

/// [`wasmtime::component::HasData`] marker for the `clock` interface.
pub type ClockData = HasSelf<ClockCtx>;

impl ClockCtx {
    pub fn new(now: i64) -> Self {
        ClockCtx {
            now: Arc::new(AtomicI64::new(now)),
        }
    }

    /// Move the clock to the next call's time (a reused instance).
    pub fn set(&self, now: i64) {
        self.now.store(now, Ordering::Relaxed);
    }

    /// The same time, as a WASI clock.
    pub fn wasi(&self) -> FixedClock {
        FixedClock(self.now.clone())
    }
}

impl clock::Host for ClockCtx {
    fn now(&mut self) -> Timestamp {
        self.now.load(Ordering::Relaxed)
    }
}

/// A clock stopped at the call's time (unix seconds).
pub struct FixedClock(Arc<AtomicI64>);

impl FixedClock {
    fn secs(&self) -> u64 {
        self.0.load(Ordering::Relaxed).max(0) as u64
    }
}

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::from_secs(self.secs())
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        self.secs().saturating_mul(1_000_000_000)
    }
}
