//! kefu: a WebAssembly plugin host for online shops' customer-service steps.
//!
//! A shop's rules for each step (greeting, order confirmation, refund
//! policy, revisit planning) run as a sandboxed WebAssembly component that
//! implements that step's world of the `kefu:workflow` WIT package.
//!
//! # Layout
//!
//! One request walks down these layers, each once, and never back up:
//!
//! ```text
//! server/    HTTP: router, extractors (who may call, bodies, queries),
//!            thin handlers, the one ApiError, the OpenAPI description
//!   |
//! app/       the application core, no HTTP: shops and their versions
//!            (registry, deploy), step calls (run: quota, placement,
//!            decision log, durability), workflow events (inbox, flow,
//!            timers, actions), revisits and the webhook outbox
//!   |                                   |
//! steps/         one module per step:   storage/   narrow traits per
//!                names, types, checks,  capability; sled behind them
//!                what it records        (the only sled user)
//! runtime/       compile, check, call plugins with limits
//! ```
//!
//! - [`app::App`] is the application: `App::open(config, env)` in `kefu
//!   serve` and in tests alike; [`server::router`] is its HTTP transport.
//! - [`Runtime`] compiles, validates and caches components and runs calls
//!   with per-call limits.
//! - [`Step`], [`StepInput`] and [`StepOutput`] describe the steps: the
//!   four of a shop's customer service and `workflow`, the flow itself.
//! - [`Storage`] is every capability the server keeps (`storage_types`
//!   lists them one by one); [`StateStore`] is the plugins' key-value state.

pub mod app;
mod bindings;
mod error;
mod files;
mod json;
mod runtime;
pub mod server;
mod state;
mod steps;
mod storage;

pub use bindings::types;
pub use error::{CallError, LoadError};
pub use runtime::{
    CallContext, CallOutcome, Limits, LogLevel, LogLine, Plugin, ReusePool, Runtime, RuntimeConfig,
};
pub use runtime::{digest as runtime_digest, read_plugin};

/// The argument that makes `kefu` a compile worker (`kefu serve` starts
/// them; see `runtime::lane`).
pub fn runtime_compile_worker_arg() -> &'static str {
    runtime::WORKER_ARG
}

/// A compile worker's main.
pub fn runtime_compile_worker_main(
    limits_json: &str,
    functions: Option<&str>,
    out: Option<&str>,
) -> std::process::ExitCode {
    runtime::compile_worker_main(limits_json, functions, out)
}
pub use state::{MemoryStateStore, StateError, StateScope, StateStore};
pub use steps::{
    InputError, Recording, Step, StepInput, StepKind, StepOutput, UnknownStep, VisitKind,
    VisitRequest,
};

/// The default plugin bundled for `step`.
pub fn default_plugin(step: Step) -> &'static [u8] {
    step.default_plugin()
}
pub use storage::{Migrated, NatsOptions, NatsStorage, SledStorage, Storage, StorageError};

/// What [`Storage`] keeps, and its capabilities one by one.
pub mod storage_types {
    pub use crate::storage::{
        ActionRecord, ActionStatus, Actor, AuditAction, AuditEvent, AuditLog, Decision,
        DecisionLog, DecisionQuery, Delivery, Durable, Effects, EventCommit, EventRecord,
        EventStatus, EventStore, Faults, Ids, Layer, Layered, Op, Outbox, OutcomeResult, Record,
        RefundRecord, Reopening, RevisitOutcome, RevisitRecord, RevisitStatus, RevisitStore,
        ShopRecord, StateRead, TimerRecord, VersionRecord, VersionSource, VersionStore,
    };
}
