//! The shared wasmtime engine and the epoch ticker that enforces timeouts.

use super::functions::FunctionCache;
use super::limits::Limits;
use crate::error::LoadError;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances. A call's deadline is counted in ticks, so
/// a timeout fires at most one tick late.
pub const TICK: Duration = Duration::from_millis(1);

/// Bytes of a linear memory or table reset in place on reuse of a slot.
const KEEP_RESIDENT: usize = 256 << 10;

/// Instance slots for the calls running, beside the idle instances kept
/// for reuse (`Limits::idle_instances`).
const RUNNING: u32 = 1_000;

/// The engine every plugin runs in, and compiles with; `functions` keeps
/// compiled functions for later compiles (see `functions`).
pub fn build(limits: &Limits, functions: Option<Arc<FunctionCache>>) -> Result<Engine, LoadError> {
    // Instances that may be alive at once: the calls running and the idle
    // ones.
    let instances = RUNNING.saturating_add(limits.idle_instances);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        // An idle store keeps the stack of its last async call.
        .total_stacks(instances)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(64)
        .table_elements(100_000)
        // Reset the few pages a call dirtied with memset and keep them
        // mapped, instead of an madvise and page faults on the next call:
        // the main cost of a fresh instance for small plugins.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        // Find the dirty pages with one ioctl (Linux 6.7+) instead of
        // resetting the whole resident prefix (docs/perf-history.md).
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(16)
        // The pool bounds every memory; the per-call limiter enforces the
        // configured limit below it with a clear error.
        .max_memory_size(limits.memory_bytes().saturating_mul(2).max(64 << 20));

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Plugins are plain components (no component-model async): without
        // the concurrency machinery, stores are lighter and async calls
        // take the plain fiber path.
        .concurrency_support(false)
        // Enough frames to tell a recursion that overflowed a guest's
        // shadow stack (see `failure::deep_recursion`); taken on traps only.
        .wasm_backtrace_max_frames(std::num::NonZeroUsize::new(64))
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if let Some(functions) = functions {
        config
            .enable_incremental_compilation(functions)
            .map_err(|e| LoadError::Invalid(format!("cannot keep compiled functions: {e:#}")))?;
    }
    Engine::new(&config).map_err(|e| LoadError::Invalid(format!("cannot build engine: {e:#}")))
}

/// Advances the engine's epoch every [`TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("kefu-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("spawn epoch ticker thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Ticks to allow for a timeout, rounded up, plus one for the partial
/// tick the call starts in.
pub fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = TICK.as_micros().max(1);
    (timeout.as_micros().div_ceil(tick) as u64).max(1) + 1
}
