//! kefu: a WebAssembly plugin host for online shops' customer-service steps.
//!
//! A shop's rules for each step (greeting, order confirmation, refund
//! policy, revisit planning) run as a sandboxed WebAssembly component that
//! implements that step's world of the `kefu:workflow` WIT package.
//!
//! - [`Runtime`] compiles, validates and caches components and runs calls
//!   with per-call limits.
//! - [`Step`], [`StepInput`] and [`StepOutput`] describe the four steps.
//! - [`StateStore`] is where plugins keep their key-value state.

mod bindings;
mod bundled;
mod checks;
mod error;
mod runtime;
pub mod server;
mod state;
mod step;
mod storage;

pub use bindings::types;
pub use bundled::default_plugin;
pub use error::{CallError, LoadError};
pub use runtime::{
    CallContext, CallOutcome, Limits, LogLevel, LogLine, Plugin, ReusePool, Runtime, RuntimeConfig,
};
pub use runtime::{digest as runtime_digest, read_plugin};
pub use state::{MemoryStateStore, StateError, StateScope, StateStore};
pub use step::{InputError, Step, StepInput, StepOutput, UnknownStep};
pub use storage::{SledStorage, Storage, StorageError};

/// Records kept by [`Storage`].
pub mod storage_types {
    pub use crate::storage::{
        AuditEvent, Decision, DecisionQuery, RefundRecord, RevisitRecord, VersionRecord,
    };
}
