//! Per-call limits, and the memory limiter that enforces the memory one.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use wasmtime::ResourceLimiter;

/// Limits applied to every plugin call. Deserialized from the `[limits]`
/// table of the server config; missing fields keep their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock time a call may take, in milliseconds.
    pub timeout_ms: u64,
    /// Linear memory a plugin may use, in MiB.
    pub memory_mib: u64,
    /// Size of a call's output (as JSON), in KiB.
    pub output_kib: u64,
    /// Bytes of log (log calls, stdout, stderr) kept per call, in KiB.
    pub log_kib: u64,
    /// Reused instances kept idle across all shops and steps (the least
    /// recently used gives way past it). Each costs ~90-110 KB resident
    /// for a Rust plugin, far more for Python or JavaScript.
    pub idle_instances: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 1_000,
            memory_mib: 128,
            output_kib: 256,
            log_kib: 64,
            idle_instances: 1_000,
        }
    }
}

impl Limits {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
    pub fn output_bytes(&self) -> usize {
        usize::try_from(self.output_kib.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
    }
    pub fn log_bytes(&self) -> usize {
        usize::try_from(self.log_kib.saturating_mul(1 << 10)).unwrap_or(usize::MAX)
    }
}

/// Enforces the per-call memory limit and records the peak.
pub struct MemoryLimiter {
    limit: usize,
    pub total: usize,
    pub peak: usize,
}

/// The trap raised when a plugin asks for more memory than allowed.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {requested})")]
pub struct MemoryExceeded {
    pub limit: usize,
    pub requested: usize,
}

impl MemoryLimiter {
    pub(super) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            total: 0,
            peak: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let requested = self.total - current.min(self.total) + desired;
        if requested > self.limit {
            return Err(wasmtime::Error::new(MemoryExceeded {
                limit: self.limit,
                requested,
            }));
        }
        self.total = requested;
        self.peak = self.peak.max(requested);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}
