//! Where a plugin call runs. Most calls take tens of microseconds: they
//! run right on the request's async task, with no hand-off to another
//! thread. A call that is still running after its inline budget, and
//! every call of its plugin version for a while after, is finished on the
//! slow lane: low-priority threads, so slow plugins never hold the async
//! threads or the cores that every other shop's requests need. Steps that
//! reuse instances (Python, JS) make blocking calls on the blocking pool.

use super::registry::{ActivePlugin, now_ms};
use crate::runtime::{CallContext, CallOutcome, Runtime, thread_cpu_time};
use crate::steps::StepInput;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

/// How long a plugin version that was slow once runs off the async
/// threads before it is tried inline again.
pub const SLOW_FOR_MS: i64 = 10_000;

/// CPU time a call may use on the async threads before it moves to the
/// slow lane: some 200 times a default plugin's call, so that a fast call
/// whose host functions met a slow storage write (over 1 ms at times) is
/// not taken for slow. It is checked at epoch ticks, so a call holds an
/// async thread for at most this plus one tick, once per [`SLOW_FOR_MS`].
pub const INLINE_BUDGET: Duration = Duration::from_millis(5);

/// Times a call must have yielded, besides using its budget, to be taken
/// for slow. A plugin that runs yields at every epoch tick (1 ms) it runs
/// through, so one that used 5 ms of CPU yielded about five times. A fast
/// call whose thread's CPU clock jumped while it ran once (a page-fault
/// storm, or the VM's core taken away by the host, which the guest still
/// counts as the thread's time) yielded once or twice: taken for slow, its
/// whole shop step went to the slow lane for [`SLOW_FOR_MS`], behind the
/// looping neighbour it was meant to be kept from.
pub const MIN_YIELDS: u32 = 5;

/// Whether a call still running inline has shown itself slow.
fn used_its_budget(cpu: Duration, yields: u32) -> bool {
    cpu >= INLINE_BUDGET && yields >= MIN_YIELDS
}

/// Run one call of `active` on `input`; the input comes back with the
/// outcome. Fails only if the task running the call died.
pub async fn call(
    runtime: Arc<Runtime>,
    active: Arc<ActivePlugin>,
    ctx: CallContext,
    input: StepInput,
) -> Result<(CallOutcome, StepInput), String> {
    let slow = now_ms() < active.slow_until_ms.load(Ordering::Relaxed);
    let marker = active.clone();
    let shop = ctx.shop.clone();
    let mut call = Box::pin(async move {
        let outcome = match &active.pool {
            Some(pool) => pool.call_async(&runtime, ctx, &input).await,
            None => active.plugin.call_async(&runtime, ctx, &input).await,
        };
        (outcome, input)
    });
    if !slow {
        // The call runs here until it is done or has used its inline
        // budget of CPU time. CPU, not wall-clock: a fast call whose thread
        // was preempted, or that straddles an epoch tick, is not slow.
        // (All polls below run within this one poll of the request task,
        // so on one thread.)
        let started = thread_cpu_time();
        let mut yields = 0;
        loop {
            if let Poll::Ready(done) = poll_once(call.as_mut()).await {
                return Ok(done);
            }
            yields += 1;
            if used_its_budget(thread_cpu_time().saturating_sub(started), yields) {
                break;
            }
        }
        marker
            .slow_until_ms
            .store(now_ms() + SLOW_FOR_MS, Ordering::Relaxed);
        metrics::counter!("kefu_calls_offloaded_total", "shop" => shop).increment(1);
    }
    slow_lane()
        .spawn(call)
        .await
        .map_err(|e| format!("plugin task failed: {e}"))
}

/// The thread that finishes slow calls. It runs in the idle scheduling
/// class, so whenever a fast call of any shop is ready it gets the core at
/// once instead of waiting out a slow plugin's time slice; slow calls share
/// what is left, yielding to each other at every epoch tick. On a busy
/// host a slow plugin therefore gets little CPU and may reach its
/// wall-clock timeout sooner: the price of keeping the fast ones fast.
/// The thread also stays on one core: left free, the kernel moves it to
/// whichever core the fast threads just left, so they find it in their way
/// on every core in turn (see `pin_to_first_core`).
fn slow_lane() -> &'static tokio::runtime::Handle {
    static LANE: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    LANE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            // One core at most for all slow calls together.
            .worker_threads(1)
            .thread_name("kefu-slow")
            .on_thread_start(|| {
                lower_priority();
                pin_to_first_core();
            })
            .build()
            .expect("start the slow-call threads")
    })
    .handle()
}

/// The slow lane's threads run in the idle class (see
/// `runtime::idle_priority`: a nice value does not protect the others,
/// docs/perf-history.md).
fn lower_priority() {
    crate::runtime::idle_priority();
}

/// Keep the calling thread on the first core it may use. An idle-class
/// thread that is free to move is pulled to whichever core goes idle, so
/// it is in the way of the fast threads' next wakeup on every core in turn;
/// pinned, it stays out of their way on all but one, and on the first
/// rather than the last the kernel spreads the async workers better
/// (measurements: docs/perf-history.md, "The slow lane on the first
/// core"). Fast threads still use every core, that one included, taking
/// it from the slow lane whenever they need it.
#[cfg(target_os = "linux")]
pub(crate) fn pin_to_first_core() {
    let allowed = allowed_cores();
    let (Some(&first), true) = (allowed.first(), allowed.len() > 1) else {
        return;
    };
    // SAFETY: `one` is a plain bit set filled by CPU_SET; pid 0 is the
    // calling thread.
    let rc = unsafe {
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(first, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one)
    };
    if rc != 0 {
        tracing::warn!(
            "cannot keep the slow-call thread on one core: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The cores the calling thread may run on.
#[cfg(target_os = "linux")]
fn allowed_cores() -> Vec<usize> {
    // SAFETY: `set` is a plain bit set that sched_getaffinity fills; pid 0
    // is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_to_first_core() {}

/// Poll `fut` once with the current task's waker.
async fn poll_once<F: Future + Unpin>(mut fut: F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx))).await
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_slow_only_if_it_ran_through_its_budget() {
        let ms = Duration::from_millis;
        assert!(used_its_budget(ms(5), 5), "5 ms of CPU over five ticks");
        assert!(!used_its_budget(ms(4), 9), "under budget");
        assert!(
            !used_its_budget(ms(12), 1),
            "the clock jumped once: the thread lost its core, the call did not run"
        );
    }

    #[tokio::test]
    async fn the_slow_lane_runs_in_the_idle_class_on_the_first_core() {
        let here = allowed_cores();
        let (policy, cores) = slow_lane()
            .spawn(async {
                // SAFETY: reads the calling thread's policy.
                let policy = unsafe { libc::sched_getscheduler(0) };
                (policy, allowed_cores())
            })
            .await
            .unwrap();
        assert_eq!(
            policy,
            libc::SCHED_IDLE,
            "the slow lane is in the idle class"
        );
        if here.len() > 1 {
            assert_eq!(
                cores,
                here[..1],
                "the slow lane stays on the first core allowed"
            );
        }
    }
}
