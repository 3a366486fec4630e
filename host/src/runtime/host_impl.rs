//! What a plugin can reach: the per-call store data and the kefu host
//! imports (state, log, config, clock). WASI is linked with nothing
//! granted: no files, sockets, environment or arguments.

use super::limits::MemoryLimiter;
use super::output::CapturedOutput;
use crate::bindings::{self, clock, config, log, state, types::Timestamp};
use crate::error::LoadError;
use crate::state::{StateError, StateScope, StateStore};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest value a plugin may store under one key, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most keys one `list-keys` call returns.
pub const MAX_LIST_KEYS: u32 = 1_000;

/// Severity of a plugin log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    /// A line the plugin printed to stdout.
    Stdout,
    /// A line the plugin printed to stderr.
    Stderr,
}

/// One line of a plugin's log for a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// Data of the store of one call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    scope: StateScope,
    store: Arc<dyn StateStore>,
    config_json: String,
    now: i64,
    /// The call's time as WASI's clocks see it (shared with them).
    clock: Arc<AtomicI64>,
    pub(super) logs: Vec<LogLine>,
    log_budget: usize,
    log_room: usize,
    pub(super) logs_dropped: usize,
    pub(super) stdout: CapturedOutput,
    pub(super) stderr: CapturedOutput,
}

pub struct CallSetup {
    pub scope: StateScope,
    pub store: Arc<dyn StateStore>,
    pub config_json: String,
    pub now: i64,
    pub memory_limit: usize,
    pub log_bytes: usize,
}

impl CallState {
    pub fn new(setup: CallSetup) -> Self {
        let stdout = CapturedOutput::new(setup.log_bytes);
        let stderr = CapturedOutput::new(setup.log_bytes);
        let now = setup.now;
        let clock = Arc::new(AtomicI64::new(now));
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // WASI clocks agree with the host clock import: fixed per call.
            .wall_clock(FixedClock(clock.clone()))
            .monotonic_clock(FixedClock(clock.clone()))
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(setup.memory_limit),
            scope: setup.scope,
            store: setup.store,
            config_json: setup.config_json,
            now,
            clock,
            logs: Vec::new(),
            log_budget: setup.log_bytes,
            log_room: setup.log_bytes,
            logs_dropped: 0,
            stdout,
            stderr,
        }
    }

    /// Prepare a reused store for the next call: new shop scope, config,
    /// time and empty logs. Nothing of the previous call stays host-side.
    pub fn reset(
        &mut self,
        scope: StateScope,
        store: Arc<dyn StateStore>,
        config_json: String,
        now: i64,
    ) {
        self.scope = scope;
        self.store = store;
        self.config_json = config_json;
        self.now = now;
        self.clock.store(now, Ordering::Relaxed);
        self.logs.clear();
        self.logs_dropped = 0;
        self.log_room = self.log_budget;
        let _ = self.stdout.take();
        let _ = self.stderr.take();
        self.limiter.peak = self.limiter.total;
    }

    fn push_log(&mut self, level: LogLevel, mut message: String) {
        if message.len() > self.log_room {
            self.logs_dropped += message.len() - self.log_room;
            let mut cut = self.log_room;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        if message.is_empty() {
            return;
        }
        self.log_room -= message.len();
        self.logs.push(LogLine { level, message });
    }

    /// Move captured stdout/stderr into the log, line by line. Each pipe
    /// has its own cap (the log budget), separate from log calls.
    pub fn collect_output(&mut self) {
        for (level, pipe) in [
            (LogLevel::Stdout, self.stdout.clone()),
            (LogLevel::Stderr, self.stderr.clone()),
        ] {
            let (text, dropped) = pipe.take();
            self.logs_dropped += dropped;
            self.logs
                .extend(text.lines().filter(|l| !l.is_empty()).map(|l| LogLine {
                    level,
                    message: l.to_string(),
                }));
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A clock stopped at the call's time (unix seconds).
struct FixedClock(Arc<AtomicI64>);

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

/// The linker plugins are instantiated with: WASI (for synchronous or
/// async calls) and the kefu imports, which never block.
pub fn linker(engine: &Engine, for_async: bool) -> Result<Linker<CallState>, LoadError> {
    let mut linker = Linker::new(engine);
    let setup = |e: wasmtime::Error| LoadError::Invalid(format!("cannot set up linker: {e:#}"));
    if for_async {
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(setup)?;
    } else {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
    }
    bindings::HostImports::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(setup)?;
    Ok(linker)
}

impl bindings::types::Host for CallState {}

impl state::Host for CallState {
    fn get(&mut self, key: String) -> Option<String> {
        match self.store.get(&self.scope, &key) {
            Ok(value) => value,
            Err(e) => {
                self.push_log(LogLevel::Error, format!("state get `{key}` failed: {e}"));
                None
            }
        }
    }

    fn set(&mut self, key: String, value: String) -> Result<(), state::StateError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(state::StateError::TooLarge(format!(
                "key is {} bytes, the limit is {MAX_KEY_BYTES}",
                key.len()
            )));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(state::StateError::TooLarge(format!(
                "value is {} bytes, the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        self.store
            .set(&self.scope, &key, &value)
            .map_err(|e| match e {
                StateError::TooLarge(m) => state::StateError::TooLarge(m),
                StateError::QuotaExceeded(m) => state::StateError::QuotaExceeded(m),
                StateError::Unavailable(m) => state::StateError::Unavailable(m),
            })
    }

    fn delete(&mut self, key: String) -> bool {
        self.store.delete(&self.scope, &key).unwrap_or_else(|e| {
            self.push_log(LogLevel::Error, format!("state delete `{key}` failed: {e}"));
            false
        })
    }

    fn list_keys(&mut self, prefix: String, limit: u32) -> Vec<String> {
        let limit = limit.min(MAX_LIST_KEYS) as usize;
        self.store
            .list_keys(&self.scope, &prefix, limit)
            .unwrap_or_else(|e| {
                self.push_log(LogLevel::Error, format!("state list-keys failed: {e}"));
                Vec::new()
            })
    }
}

impl log::Host for CallState {
    fn write(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.push_log(level, message);
    }
}

impl config::Host for CallState {
    fn get(&mut self) -> String {
        self.config_json.clone()
    }
}

impl clock::Host for CallState {
    fn now(&mut self) -> Timestamp {
        self.now
    }
}
