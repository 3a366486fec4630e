//! The plugin runtime: one wasmtime engine, compiled components cached by
//! content hash, and calls run in a fresh store with per-call limits.

mod cache;
mod call;
mod engine;
mod host_impl;
mod limits;
mod load;
mod output;

pub use call::{CallContext, CallOutcome};
pub use host_impl::{LogLevel, LogLine};
pub use limits::Limits;
pub use load::Plugin;

use crate::error::LoadError;
use crate::step::Step;
use std::path::PathBuf;
use wasmtime::Engine;
use wasmtime::component::Linker;

/// How to build a [`Runtime`].
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    /// Where compiled components are kept across restarts; `None` keeps
    /// them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Per-call limits applied to every plugin.
    pub limits: Limits,
}

/// Compiles, validates and runs plugins. Cheap to share behind an `Arc`;
/// calls may run on many threads at once.
pub struct Runtime {
    engine: Engine,
    linker: Linker<host_impl::CallState>,
    cache: cache::CompileCache,
    limits: Limits,
    _ticker: engine::EpochTicker,
}

impl Runtime {
    /// Build the engine, the linker (WASI with nothing granted plus the
    /// kefu host imports) and the compile cache.
    pub fn new(config: RuntimeConfig) -> Result<Self, LoadError> {
        let engine = engine::build(&config.limits)?;
        let linker = host_impl::linker(&engine)?;
        let cache = cache::CompileCache::new(&engine, config.cache_dir)?;
        let ticker = engine::EpochTicker::start(engine.clone());
        Ok(Runtime {
            engine,
            linker,
            cache,
            limits: config.limits,
            _ticker: ticker,
        })
    }

    /// The limits calls run under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// How many components were compiled (not found in a cache) so far.
    pub fn compilations(&self) -> u64 {
        self.cache.compilations()
    }

    /// Load `bytes` as a plugin for `step`: compile (or fetch from the
    /// cache) and check that it implements the step's world.
    pub fn load(&self, bytes: &[u8], step: Step) -> Result<Plugin, LoadError> {
        let (digest, component) = self.cache.get_or_compile(&self.engine, bytes)?;
        load::prepare(self, digest, component, step)
    }

    /// Load a plugin from a file.
    pub fn load_file(&self, path: &std::path::Path, step: Step) -> Result<Plugin, LoadError> {
        let bytes = read_plugin(path)?;
        self.load(&bytes, step)
    }

    /// Which step world a component implements; if none, why not for each.
    pub fn check(&self, bytes: &[u8]) -> Result<Plugin, Vec<LoadError>> {
        let (digest, component) = self
            .cache
            .get_or_compile(&self.engine, bytes)
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
        source,
    })
}
