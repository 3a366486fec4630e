//! What a plugin can reach: the data of one call's store, one context per
//! capability (`state`, `log`, `config`, `clock`, each in its own file, as
//! wasmtime-wasi does), and the linker that grants them. WASI is linked
//! with nothing granted: no files, sockets, environment or arguments.

mod clock;
mod config;
mod log;
mod state;

pub use log::{LogCtx, LogLevel, LogLine};
pub use state::StateUnavailable;

use super::limits::MemoryLimiter;
use crate::bindings::{
    self, clock as clock_if, config as config_if, log as log_if, state as state_if,
};
use crate::error::LoadError;
use crate::state::{StateScope, StateStore};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Data of the store of one call.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limiter: MemoryLimiter,
    state: state::StateCtx,
    pub(super) log: LogCtx,
    config: config::ConfigCtx,
    clock: clock::ClockCtx,
}

/// What a new store is made with.
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
        let log = LogCtx::new(setup.log_bytes);
        let clock = clock::ClockCtx::new(setup.now);
        let wasi = WasiCtx::builder()
            .stdout(log.stdout.clone())
            .stderr(log.stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            // WASI clocks agree with the host clock import: fixed per call.
            .wall_clock(clock.wasi())
            .monotonic_clock(clock.wasi())
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(setup.memory_limit),
            state: state::StateCtx {
                scope: setup.scope,
                store: setup.store,
            },
            log,
            config: config::ConfigCtx {
                json: setup.config_json,
            },
            clock,
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
        self.state = state::StateCtx { scope, store };
        self.config.json = config_json;
        self.clock.set(now);
        self.log.clear();
        self.limiter.peak = self.limiter.total;
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

/// The linker plugins are instantiated with: WASI (for synchronous or
/// async calls) and the kefu imports, each on its own context; none of
/// them blocks.
pub fn linker(engine: &Engine, for_async: bool) -> Result<Linker<CallState>, LoadError> {
    let mut linker: Linker<CallState> = Linker::new(engine);
    let setup = |e: wasmtime::Error| LoadError::Invalid(format!("cannot set up linker: {e:#}"));
    if for_async {
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(setup)?;
    } else {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(setup)?;
    }
    state_if::add_to_linker::<_, state::StateData>(&mut linker, |s| state::StateView {
        ctx: &mut s.state,
        log: &mut s.log,
    })
    .map_err(setup)?;
    log_if::add_to_linker::<_, log::LogData>(&mut linker, |s| &mut s.log).map_err(setup)?;
    config_if::add_to_linker::<_, config::ConfigData>(&mut linker, |s| &mut s.config)
        .map_err(setup)?;
    clock_if::add_to_linker::<_, clock::ClockData>(&mut linker, |s| &mut s.clock).map_err(setup)?;
    // `types` declares types only; components still import it by name.
    bindings::types::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s).map_err(setup)?;
    Ok(linker)
}

impl bindings::types::Host for CallState {}
