//! Typed errors of loading and calling plugins.

use std::time::Duration;

/// Why a component could not be loaded as a plugin for a step.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file: {0}")]
    NotWasm(String),
    /// A core module was given where a component is required.
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin for \
         wasm32-wasip2 (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Compilation or validation failed.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component imports something the host does not provide.
    #[error("component cannot run in world `{world}`: {detail}")]
    Imports { world: &'static str, detail: String },
    /// The step's export is missing.
    #[error("component does not implement world `{world}`: missing export `{export}`{found}")]
    MissingExport {
        world: &'static str,
        export: &'static str,
        /// A note on what the component does export, if anything.
        found: String,
    },
    /// The export exists with another signature.
    #[error(
        "component does not implement world `{world}`: export `{export}` has the wrong type: {detail}"
    )]
    MismatchedExport {
        world: &'static str,
        export: &'static str,
        detail: String,
    },
    /// Reading the file failed.
    #[error("cannot read plugin {path}: {message}")]
    Io { path: String, message: String },
}

/// Why a call to a plugin failed. The host stays healthy after every one.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The input is for another step than the plugin's.
    #[error("input is for step `{input}` but the plugin implements `{plugin}`")]
    WrongStep {
        plugin: &'static str,
        input: &'static str,
    },
    /// The call ran past its wall-clock limit and was stopped.
    #[error("plugin timed out after {0:?}")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin exceeded its memory limit of {limit} bytes (asked for {requested})")]
    MemoryLimit { limit: usize, requested: usize },
    /// The plugin's stack overflowed (e.g. runaway recursion).
    #[error("plugin overflowed its stack")]
    StackOverflow,
    /// The plugin trapped (panic, unreachable, out-of-bounds access...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The plugin returned an output larger than allowed.
    #[error("plugin output is {size} bytes, over the limit of {limit}")]
    OutputTooLarge { size: usize, limit: usize },
    /// The plugin itself reported it cannot decide.
    #[error("plugin returned an error: {0}")]
    Plugin(String),
    /// The output breaks a rule the host enforces (e.g. refunding more
    /// than was paid, planning a revisit in the past).
    #[error("plugin output rejected: {0}")]
    InvalidOutput(String),
    /// The host could not set up the call (e.g. the instance pool is full).
    #[error("host could not run the plugin: {0}")]
    Host(String),
}

impl CallError {
    /// A short, stable code for APIs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::WrongStep { .. } => "wrong_step",
            CallError::Timeout(_) => "plugin_timeout",
            CallError::MemoryLimit { .. } => "plugin_memory_limit",
            CallError::StackOverflow => "plugin_stack_overflow",
            CallError::Trap(_) => "plugin_trap",
            CallError::OutputTooLarge { .. } => "plugin_output_too_large",
            CallError::Plugin(_) => "plugin_error",
            CallError::InvalidOutput(_) => "plugin_invalid_output",
            CallError::Host(_) => "host_error",
        }
    }
}
