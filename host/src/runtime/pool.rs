//! Reused instances: far cheaper calls for plugins whose instantiation is
//! expensive (Python, JavaScript), at the price of state that lives on in
//! the guest between calls.
//!
//! A pool belongs to one shop's step version, so an instance only ever
//! serves the shop it was created for; the host-side store data (shop
//! scope, config, time, logs) is reset before every call. An instance that
//! trapped or timed out is dropped, never reused.
//!
//! The server calls reused instances like fresh ones, on the request's
//! async task ([`ReusePool::call_async`]); `kefu run --reuse` calls them
//! synchronously. An instance serves calls of the kind it was made for
//! (their WASI is linked differently).

use super::Runtime;
use super::call::{CallContext, CallOutcome, arm_async, new_async_store, new_store};
use super::engine::deadline_ticks;
use super::host::CallState;
use super::load::Plugin;
use crate::state::StateScope;
use crate::steps::StepInput;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Instant;
use wasmtime::Store;
use wasmtime::component::Instance;

/// Idle instances kept per pool (more calls at once create more, which
/// are dropped after use).
pub const MAX_IDLE: usize = 4;

/// How long an idle instance is kept, at the cap, against newer ones.
pub const KEEP_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// One idle instance, and when it was last put back.
struct Idle {
    store: Store<CallState>,
    instance: Instance,
    stamp: u64,
    /// Made for async calls.
    is_async: bool,
}

type IdleList = Mutex<Vec<Idle>>;

fn lock(list: &IdleList) -> std::sync::MutexGuard<'_, Vec<Idle>> {
    list.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every pool's idle instances in the order they were put back: a
/// runtime's cap on how many stay idle in all (`Limits::idle_instances`;
/// the engine has slots for them beside those of the calls running).
/// Past it, the least recently used idle instance anywhere gives way if
/// it has been idle [`KEEP_FOR`]; if every one was used more lately, the
/// instance just used is dropped instead. (Giving way at once, under calls
/// spread evenly over more pools than the cap, would drop every instance
/// before its next call: each call then pays a fresh instance and an
/// eviction, 1,000 shops answered 0.75-0.85x as fast as with fresh
/// instances.)
pub(crate) struct IdleInstances {
    cap: usize,
    /// Idle instances now, in all pools.
    count: AtomicUsize,
    stamps: AtomicU64,
    /// (pool, stamp, when) of each instance put back, oldest first; an
    /// entry whose instance was taken since, or whose pool is gone, is
    /// stale and skipped.
    queue: Mutex<VecDeque<(Weak<IdleList>, u64, Instant)>>,
}

impl IdleInstances {
    pub(crate) fn new(cap: usize) -> Self {
        IdleInstances {
            cap,
            count: AtomicUsize::new(0),
            stamps: AtomicU64::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Idle instances in all pools.
    pub(crate) fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// An instance was put back in `list` with `stamp`: past the cap, drop
    /// the least recently used idle one if it has been idle [`KEEP_FOR`],
    /// else this one.
    fn kept(&self, list: &Arc<IdleList>, stamp: u64) {
        let mut victims = Vec::new();
        {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            queue.push_back((Arc::downgrade(list), stamp, now));
            let mut count = self.count.fetch_add(1, Ordering::AcqRel) + 1;
            while count > self.cap {
                let Some((pool, old, at)) = queue.pop_front() else {
                    break;
                };
                let Some(pool) = pool.upgrade() else { continue };
                let mut idle = lock(&pool);
                let Some(i) = idle.iter().position(|i| i.stamp == old) else {
                    continue;
                };
                if old != stamp && now.duration_since(at) < KEEP_FOR {
                    // Every idle instance was used lately: keep them all
                    // and let the one just used go.
                    drop(idle);
                    queue.push_front((Arc::downgrade(&pool), old, at));
                    queue.pop_back();
                    let mut mine = lock(list);
                    if let Some(j) = mine.iter().position(|i| i.stamp == stamp) {
                        victims.push(mine.remove(j));
                        count = self.count.fetch_sub(1, Ordering::AcqRel) - 1;
                    }
                    break;
                }
                victims.push(idle.remove(i));
                count = self.count.fetch_sub(1, Ordering::AcqRel) - 1;
            }
            // Stale entries (instances taken since) pile up under steady
            // reuse: drop them once they outnumber the live ones.
            if queue.len() > 2 * self.cap.max(count) + 1024 {
                queue.retain(|(pool, stamp, _)| {
                    pool.upgrade()
                        .is_some_and(|p| lock(&p).iter().any(|i| i.stamp == *stamp))
                });
            }
        }
        drop(victims);
    }
}

pub struct ReusePool {
    plugin: Plugin,
    idle: Arc<IdleList>,
    /// The runtime's cap, once the pool kept an instance.
    all: OnceLock<Arc<IdleInstances>>,
}

impl ReusePool {
    pub fn new(plugin: Plugin) -> Self {
        ReusePool {
            plugin,
            idle: Arc::new(Mutex::new(Vec::new())),
            all: OnceLock::new(),
        }
    }

    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Idle instances right now.
    pub fn idle(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Run one call on an idle instance, or a new one that is kept after.
    pub fn call(&self, rt: &Runtime, ctx: CallContext, input: &StepInput) -> CallOutcome {
        let start = Instant::now();
        if let Some(refused) = self.plugin.refuse_wrong_step(input, start) {
            return refused;
        }
        let now = ctx.now;
        let (mut store, instance) = match self.take(rt, false) {
            Some((mut store, instance)) => {
                reset(&mut store, ctx);
                // Made by `new_store` for synchronous calls: it traps at
                // its deadline; only the deadline is new.
                store.set_epoch_deadline(deadline_ticks(rt.limits().timeout()));
                (store, Some(instance))
            }
            None => (new_store(rt, ctx), None),
        };
        let (outcome, instance) = self.plugin.run(rt, &mut store, instance, input, now, start);
        self.put_back(rt, store, instance, false);
        outcome
    }

    /// [`ReusePool::call`] on the calling task, yielding at every epoch
    /// tick like a fresh instance's call (`Plugin::call_async`), so that
    /// the server runs it inline and moves it to the slow lane only if it
    /// runs long.
    pub async fn call_async(
        &self,
        rt: &Runtime,
        ctx: CallContext,
        input: &StepInput,
    ) -> CallOutcome {
        let start = Instant::now();
        if let Some(refused) = self.plugin.refuse_wrong_step(input, start) {
            return refused;
        }
        let now = ctx.now;
        let (mut store, instance) = match self.take(rt, true) {
            Some((mut store, instance)) => {
                reset(&mut store, ctx);
                arm_async(rt, &mut store);
                (store, Some(instance))
            }
            None => (new_async_store(rt, ctx), None),
        };
        let (outcome, instance) = self
            .plugin
            .run_async(rt, &mut store, instance, input, now, start)
            .await;
        self.put_back(rt, store, instance, true);
        outcome
    }

    /// An idle instance of the kind asked for (the most recently kept).
    fn take(&self, rt: &Runtime, is_async: bool) -> Option<(Store<CallState>, Instance)> {
        let Idle {
            store, instance, ..
        } = {
            let mut idle = lock(&self.idle);
            let at = idle.iter().rposition(|i| i.is_async == is_async)?;
            idle.remove(at)
        };
        rt.idle_instances().count.fetch_sub(1, Ordering::AcqRel);
        Some((store, instance))
    }

    /// Keep an instance fit for another call, if there is room.
    fn put_back(
        &self,
        rt: &Runtime,
        store: Store<CallState>,
        instance: Option<Instance>,
        is_async: bool,
    ) {
        let Some(instance) = instance else { return };
        let all = self.all.get_or_init(|| rt.idle_instances().clone());
        let stamp = all.stamps.fetch_add(1, Ordering::Relaxed);
        let kept = {
            let mut idle = lock(&self.idle);
            let room = idle.len() < MAX_IDLE;
            if room {
                idle.push(Idle {
                    store,
                    instance,
                    stamp,
                    is_async,
                });
            }
            room
        };
        if kept {
            all.kept(&self.idle, stamp);
        }
    }
}

/// An idle instance's host-side data, for the call `ctx`.
fn reset(store: &mut Store<CallState>, ctx: CallContext) {
    let scope = StateScope::new(ctx.shop, ctx.plugin);
    store
        .data_mut()
        .reset(scope, ctx.state, ctx.config_json, ctx.now);
}

impl Drop for ReusePool {
    /// Its idle instances go with it: no longer counted.
    fn drop(&mut self) {
        if let Some(all) = self.all.get() {
            all.count
                .fetch_sub(lock(&self.idle).len(), Ordering::AcqRel);
        }
    }
}
