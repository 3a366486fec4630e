//! The plugin runtime: one wasmtime engine, compiled components cached by
//! content hash, and calls run in a fresh store with per-call limits.

mod artifact;
mod cache;
mod call;
mod cpu;
mod engine;
mod failure;
mod functions;
mod host;
mod lane;
mod limits;
mod load;
mod output;
mod pool;

pub use cache::digest;
pub use call::{CallContext, CallOutcome, Pace};
pub use cpu::thread_cpu_time;
pub use host::{LogLevel, LogLine};
pub use lane::{WORKER_ARG, compile_worker_main, idle_priority};
pub use limits::Limits;
pub use load::Plugin;
pub use pool::ReusePool;

use crate::error::LoadError;
use crate::steps::Step;
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// The folder of the cache directory that keeps compiled functions.
const FUNCTIONS_DIR: &str = "functions";

/// How to build a [`Runtime`].
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Where compiled components are kept across restarts; `None` keeps
    /// them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits applied to every plugin.
    pub limits: Limits,
    /// The `kefu` executable, to compile in a worker process of the idle
    /// class (see `lane`); `None` compiles in this process's lane.
    pub compile_worker: Option<PathBuf>,
}

/// Compiles, validates and runs plugins. Cheap to share behind an `Arc`;
/// calls may run on many threads at once.
pub struct Runtime {
    engine: Engine,
    linker: Linker<host::CallState>,
    async_linker: Linker<host::CallState>,
    cache: cache::CompileCache,
    limits: Limits,
    /// Plugins checked for a step, by (digest, step): shops that use the
    /// same component share its compiled code and its checks.
    prepared: std::sync::Mutex<std::collections::HashMap<(String, Step), Plugin>>,
    /// Reused instances kept idle, in all pools.
    idle: std::sync::Arc<pool::IdleInstances>,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// Build the engine, the linker (WASI with nothing granted plus the
    /// kefu host imports) and the compile cache.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        // Compiled functions beside the compiled components: a component
        // sharing most of its code with one compiled before (every Python
        // plugin its interpreter) compiles only what is new.
        let functions_dir = config.cache_dir.as_ref().map(|d| d.join(FUNCTIONS_DIR));
        let functions = functions_dir
            .clone()
            .map(|dir| std::sync::Arc::new(functions::FunctionCache::new(dir)));
        let engine = engine::build(&config.limits, functions.clone())?;
        let linker = host::linker(&engine, false)?;
        let async_linker = host::linker(&engine, true)?;
        let worker = config.compile_worker.map(|exe| lane::Worker {
            exe,
            limits: config.limits.clone(),
            functions: functions_dir.clone(),
        });
        let cache = cache::CompileCache::new(&engine, config.cache_dir, worker, functions)?;
        let ticker = engine::EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            async_linker,
            cache,
            idle: std::sync::Arc::new(pool::IdleInstances::new(
                config.limits.idle_instances as usize,
            )),
            limits: config.limits,
            prepared: Default::default(),
            _ticker: ticker,
        })
    }

    /// Reused instances kept idle across every pool, and their cap.
    pub(crate) fn idle_instances(&self) -> &std::sync::Arc<pool::IdleInstances> {
        &self.idle
    }

    /// How many reused instances are idle now, in all pools.
    pub fn idle_reused_instances(&self) -> usize {
        self.idle.count()
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many components were compiled (not found in a cache) so far.
    pub fn compilations(&self) -> u64 {
        self.cache.compilations()
    }

    /// Forget a component's compiled form, in memory and on disk (no kept
    /// version runs it any more).
    pub fn evict(&self, digest: &str) {
        self.cache.evict(digest);
    }

    /// Delete compiled artifacts on disk that no digest in `keep` names and
    /// that were not used for `unused_for`; how many.
    pub fn sweep_cache(
        &self,
        keep: &std::collections::HashSet<String>,
        unused_for: std::time::Duration,
    ) -> usize {
        self.cache.sweep(keep, unused_for)
    }

    /// Compiles running now and waiting for a slot of the compile lane.
    pub fn compiles(&self) -> (usize, usize) {
        self.cache.compiles()
    }

    /// Load `bytes` as a plugin for `step`: compile (or fetch from the
    /// cache) and check that it implements the step's world.
    pub fn load(&self, bytes: &[u8], step: Step) -> Result<Plugin, LoadError> {
        let digest = digest(bytes);
        self.load_known(bytes, &digest, step)
    }

    /// Like [`Runtime::load`] for bytes whose SHA-256 the caller already
    /// computed with [`digest`] (it is trusted, not checked).
    pub(crate) fn load_known(
        &self,
        bytes: &[u8],
        digest: &str,
        step: Step,
    ) -> Result<Plugin, LoadError> {
        let component = self
            .cache
            .get_or_compile_known(&self.engine, bytes, digest)?;
        self.prepared(digest, component, step)
    }

    /// A plugin already prepared for `step` from the component with this
    /// digest, without its bytes.
    pub(crate) fn loaded(&self, digest: &str, step: Step) -> Option<Plugin> {
        self.prepared_cache()
            .get(&(digest.to_string(), step))
            .cloned()
    }

    fn prepared_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(String, Step), Plugin>> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Check a component for `step` once; later loads share the result.
    fn prepared(
        &self,
        digest: &str,
        component: wasmtime::component::Component,
        step: Step,
    ) -> Result<Plugin, LoadError> {
        if let Some(plugin) = self.loaded(digest, step) {
            return Ok(plugin);
        }
        let plugin = load::prepare(self, digest.to_string(), component, step)?;
        self.prepared_cache()
            .insert((digest.to_string(), step), plugin.clone());
        Ok(plugin)
    }

    /// Load a plugin from a file.
    pub fn load_file(&self, path: &std::path::Path, step: Step) -> Result<Plugin, LoadError> {
        let bytes = read_plugin(path)?;
        self.load(&bytes, step)
    }

    /// Which step world a component implements; if none, why not for each.
    pub fn check(&self, bytes: &[u8]) -> Result<Plugin, Vec<LoadError>> {
        let digest = digest(bytes);
        let component = self
            .cache
            .get_or_compile_known(&self.engine, bytes, &digest)
            .map_err(|e| vec![e])?;
        let mut errors = Vec::new();
        for step in Step::ALL {
            match load::prepare(self, digest.clone(), component.clone(), step) {
                Ok(plugin) => return Ok(plugin),
                Err(e) => errors.push(e),
            }
        }
        Err(errors)
    }
}

/// Read a plugin file with an error that names it.
pub fn read_plugin(path: &std::path::Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.display().to_string(),
        message: source.to_string(),
    })
}
