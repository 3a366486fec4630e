//! One call of a plugin: a fresh store with limits, the typed export call,
//! the host's checks of the output (errors are named in `failure`).

use super::Runtime;
use super::engine::deadline_ticks;
use super::failure::{classify, with_stderr};
use super::host::{CallSetup, CallState, LogLine};
use super::load::Plugin;
use crate::error::CallError;
use crate::state::{StateScope, StateStore};
use crate::steps::{self, StepInput, StepKind, StepOutput, VisitRequest, VisitRequestAsync};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Instance, TypedFunc};
use wasmtime::{Store, UpdateDeadline};

/// Who a call is for and what the host gives the plugin.
#[derive(Clone)]
pub struct CallContext {
    /// Shop the call is for.
    pub shop: String,
    /// Plugin name within the shop, scoping its state (the step by default).
    pub plugin: String,
    /// The shop's config for this plugin, a JSON object.
    pub config_json: String,
    /// The call's time, unix seconds (what the clock import returns).
    pub now: i64,
    /// Where the plugin's state lives.
    pub state: Arc<dyn StateStore>,
}

/// Called at every epoch tick of a paced call; sleeps to keep a background
/// job to its CPU budget and says how long it slept.
pub type Pace = fn() -> Duration;

/// What a call produced, including its log, whether it succeeded or not.
#[derive(Debug)]
pub struct CallOutcome {
    pub result: Result<StepOutput, CallError>,
    /// Wall-clock time of the call, instantiation included.
    pub duration: Duration,
    /// Peak linear memory of the instance, in bytes.
    pub memory_peak: usize,
    /// The plugin's log lines (log calls, then stdout and stderr).
    pub logs: Vec<LogLine>,
    /// Bytes of log dropped past the limit.
    pub logs_dropped: usize,
}

pub(super) fn new_store(rt: &Runtime, ctx: CallContext) -> Store<CallState> {
    let limits = rt.limits();
    let state = CallState::new(CallSetup {
        scope: StateScope::new(ctx.shop, ctx.plugin),
        store: ctx.state,
        config_json: ctx.config_json,
        now: ctx.now,
        memory_limit: limits.memory_bytes(),
        log_bytes: limits.log_bytes(),
    });
    let mut store = Store::new(&rt.engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(limits.timeout()));
    store.epoch_deadline_trap();
    store
}

/// A store for an async call: every epoch tick the plugin yields to the
/// executor (so a slow plugin cannot hold an async thread), and after the
/// timeout's ticks it is interrupted, as in a synchronous call.
pub(super) fn new_async_store(rt: &Runtime, ctx: CallContext) -> Store<CallState> {
    let mut store = new_store(rt, ctx);
    arm_async(rt, &mut store);
    store
}

/// Set `store` for one async call from now: yield at every tick, and be
/// interrupted once the timeout has passed. Wall-clock, not a count of
/// ticks: a call that waits for a thread does not see every tick.
pub(super) fn arm_async(rt: &Runtime, store: &mut Store<CallState>) {
    let deadline = Instant::now() + rt.limits().timeout();
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
}

impl Plugin {
    /// Run the plugin once on `input`, in a fresh instance, on the calling
    /// task. The future yields at every epoch tick the plugin runs through
    /// (a few milliseconds), so a call that does not finish within one
    /// tick shows itself as pending and may be moved to another thread.
    pub async fn call_async(
        &self,
        rt: &Runtime,
        ctx: CallContext,
        input: &StepInput,
    ) -> CallOutcome {
        let start = Instant::now();
        if let Some(refused) = self.refuse_wrong_step(input, start) {
            return refused;
        }
        let now = ctx.now;
        let mut store = new_async_store(rt, ctx);
        self.run_async(rt, &mut store, None, input, now, start)
            .await
            .0
    }

    /// Run the plugin once on `input`, in a fresh instance.
    pub fn call(&self, rt: &Runtime, ctx: CallContext, input: &StepInput) -> CallOutcome {
        let start = Instant::now();
        if let Some(refused) = self.refuse_wrong_step(input, start) {
            return refused;
        }
        let now = ctx.now;
        let mut store = new_store(rt, ctx);
        self.run(rt, &mut store, None, input, now, start).0
    }

    /// Run the plugin once on `input`, in a fresh instance, for a job in
    /// the background (a shadow, a replay): `pace` is called at every epoch
    /// tick the plugin runs through, and may sleep there (returning how
    /// long) to keep the job to its CPU budget however long the plugin
    /// runs. The timeout counts the call's time less the time paced away.
    pub fn call_paced(
        &self,
        rt: &Runtime,
        ctx: CallContext,
        input: &StepInput,
        pace: Pace,
    ) -> CallOutcome {
        let start = Instant::now();
        if let Some(refused) = self.refuse_wrong_step(input, start) {
            return refused;
        }
        let now = ctx.now;
        let mut store = new_store(rt, ctx);
        let (timeout, mut paced) = (rt.limits().timeout(), Duration::ZERO);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if start.elapsed().saturating_sub(paced) >= timeout {
                return Ok(UpdateDeadline::Interrupt);
            }
            paced += pace();
            Ok(UpdateDeadline::Continue(1))
        });
        self.run(rt, &mut store, None, input, now, start).0
    }

    pub(super) fn refuse_wrong_step(
        &self,
        input: &StepInput,
        start: Instant,
    ) -> Option<CallOutcome> {
        (input.step() != self.step).then(|| CallOutcome {
            result: Err(CallError::WrongStep {
                plugin: self.step.world(),
                input: input.step().world(),
            }),
            duration: start.elapsed(),
            memory_peak: 0,
            logs: Vec::new(),
            logs_dropped: 0,
        })
    }

    /// Call the export in `store`, on `instance` or a new one. Returns the
    /// instance when it is fit for another call (no trap, no timeout).
    pub(super) fn run(
        &self,
        rt: &Runtime,
        store: &mut Store<CallState>,
        instance: Option<Instance>,
        input: &StepInput,
        now: i64,
        start: Instant,
    ) -> (CallOutcome, Option<Instance>) {
        let called = match instance {
            Some(instance) => Ok(instance),
            None => self.pre.instantiate(&mut *store),
        }
        .and_then(|instance| {
            let call = Call {
                store: &mut *store,
                instance: &instance,
                plugin: self,
            };
            input.visit(call).map(|r| (instance, r))
        });
        self.finish(rt, store, called, input, now, start)
    }

    /// [`Plugin::run`] in a store made for async calls
    /// ([`new_async_store`]), yielding at every epoch tick.
    pub(super) async fn run_async(
        &self,
        rt: &Runtime,
        store: &mut Store<CallState>,
        instance: Option<Instance>,
        input: &StepInput,
        now: i64,
        start: Instant,
    ) -> (CallOutcome, Option<Instance>) {
        let instance = match instance {
            Some(instance) => Ok(instance),
            None => self.pre_async.instantiate_async(&mut *store).await,
        };
        let called = match instance {
            Ok(instance) => {
                let call = Call {
                    store: &mut *store,
                    instance: &instance,
                    plugin: self,
                };
                let returned = input.visit_async(call).await;
                returned.map(|r| (instance, r))
            }
            Err(e) => Err(e),
        };
        self.finish(rt, store, called, input, now, start)
    }

    /// Check what a call returned and collect its log.
    fn finish(
        &self,
        rt: &Runtime,
        store: &mut Store<CallState>,
        called: wasmtime::Result<(Instance, Result<StepOutput, String>)>,
        input: &StepInput,
        now: i64,
        start: Instant,
    ) -> (CallOutcome, Option<Instance>) {
        let (result, instance) = match called {
            Ok((instance, returned)) => (Ok(returned), Some(instance)),
            Err(e) => (Err(classify(e, rt.limits().timeout())), None),
        };
        let result = result
            .and_then(|r| r.map_err(CallError::Plugin))
            .and_then(|output| {
                steps::output_size(&output, rt.limits().output_bytes())?;
                steps::check(input, &output, now)?;
                Ok(output)
            });
        let duration = start.elapsed();
        let data = store.data_mut();
        data.log.collect_output();
        let result = result.map_err(|e| match e {
            // A guest panic says why on stderr: put that in the error.
            CallError::Trap(msg) => CallError::Trap(with_stderr(msg, &data.log.lines)),
            other => other,
        });
        let outcome = CallOutcome {
            result,
            duration,
            memory_peak: data.limiter.peak,
            logs: std::mem::take(&mut data.log.lines),
            logs_dropped: data.log.dropped,
        };
        (outcome, instance)
    }
}

/// A step's export: one borrowed request in, the plugin's result out.
type StepFunc<'a, K> =
    TypedFunc<(&'a <K as StepKind>::Request,), (Result<<K as StepKind>::Answer, String>,)>;

/// One call of the export of `plugin` in `instance`, typed by the step.
struct Call<'a> {
    store: &'a mut Store<CallState>,
    instance: &'a Instance,
    plugin: &'a Plugin,
}

impl Call<'_> {
    /// The typed handle of the export.
    fn export<'r, K: StepKind>(&mut self) -> wasmtime::Result<StepFunc<'r, K>> {
        let func = self
            .instance
            .get_func(&mut *self.store, self.plugin.export)
            .ok_or_else(|| wasmtime::format_err!("export `{}` is missing", K::EXPORT))?;
        // SAFETY: when the plugin was loaded, the step world's generated
        // bindings (`K::check_export`, wasmtime's own `*Indices::new`)
        // type-checked this export against `K::Request` and `K::Answer`,
        // and every instance of the plugin comes from that component;
        // `refuse_wrong_step` made sure the input is this step's. A
        // borrowed record lowers exactly like an owned one. The checked
        // `get_typed_func` type-checks again on every instance: 2-7% of a
        // fresh call (docs/PERFORMANCE.md).
        Ok(unsafe { StepFunc::<K>::new_unchecked(func) })
    }
}

impl VisitRequest for Call<'_> {
    type Out = wasmtime::Result<Result<StepOutput, String>>;

    fn visit<K: StepKind>(mut self, request: &K::Request) -> Self::Out {
        let func = self.export::<K>()?;
        let (result,) = func.call(&mut *self.store, (request,))?;
        Ok(result.map(K::output))
    }
}

impl VisitRequestAsync for Call<'_> {
    type Out = wasmtime::Result<Result<StepOutput, String>>;

    async fn visit<K: StepKind>(mut self, request: &K::Request) -> Self::Out {
        let func = self.export::<K>()?;
        let (result,) = func.call_async(&mut *self.store, (request,)).await?;
        Ok(result.map(K::output))
    }
}
