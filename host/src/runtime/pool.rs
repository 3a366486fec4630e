//! Reused instances: far cheaper calls for plugins whose instantiation is
//! expensive (Python, JavaScript), at the price of state that lives on in
//! the guest between calls.
//!
//! A pool belongs to one shop's step version, so an instance only ever
//! serves the shop it was created for; the host-side store data (shop
//! scope, config, time, logs) is reset before every call. An instance that
//! trapped or timed out is dropped, never reused.

use super::Runtime;
use super::call::{CallContext, CallOutcome, new_store};
use super::engine::deadline_ticks;
use super::host::CallState;
use super::load::Plugin;
use crate::state::StateScope;
use crate::steps::StepInput;
use std::sync::Mutex;
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::Instance;

/// Idle instances kept per pool (more calls at once create more, which
/// are dropped after use).
pub const MAX_IDLE: usize = 4;

pub struct ReusePool {
    plugin: Plugin,
    idle: Mutex<Vec<(Store<CallState>, Instance)>>,
}

impl ReusePool {
    pub fn new(plugin: Plugin) -> Self {
        ReusePool {
            plugin,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Idle instances right now.
    pub fn idle(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Run one call on an idle instance, or a new one that is kept after.
    pub fn call(&self, rt: &Runtime, ctx: CallContext, input: &StepInput) -> CallOutcome {
        let start = Instant::now();
        if let Some(refused) = self.plugin.refuse_wrong_step(input, start) {
            return refused;
        }
        let now = ctx.now;
        let taken = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (mut store, instance) = match taken {
            Some((mut store, instance)) => {
                let scope = StateScope::new(ctx.shop, ctx.plugin);
                store
                    .data_mut()
                    .reset(scope, ctx.state, ctx.config_json, ctx.now);
                store.set_epoch_deadline(deadline_ticks(rt.limits().timeout()));
                (store, Some(instance))
            }
            None => (new_store(rt, ctx), None),
        };
        let (outcome, instance) = self.plugin.run(rt, &mut store, instance, input, now, start);
        if let Some(instance) = instance {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE {
                idle.push((store, instance));
            }
        }
        outcome
    }
}
