//! Where a plugin call runs. Most calls take tens of microseconds: they
//! run right on the request's async task, with no hand-off to another
//! thread. A call that is still running after its inline budget, and
//! every call of its plugin version for a while after, is finished on the
//! slow lane: low-priority threads, so slow plugins never hold the async
//! threads or the cores that every other shop's requests need. Steps that
//! reuse instances (Python, JS) make blocking calls on the blocking pool.

use super::error::ApiError;
use super::shops::{ActivePlugin, now_ms};
use crate::runtime::{CallContext, CallOutcome, Runtime};
use crate::step::StepInput;
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

/// Run one call of `active` on `input`; the input comes back with the
/// outcome.
pub async fn call(
    runtime: Arc<Runtime>,
    active: Arc<ActivePlugin>,
    ctx: CallContext,
    input: StepInput,
) -> Result<(CallOutcome, StepInput), ApiError> {
    if active.pool.is_some() {
        return blocking(move || {
            let outcome = active.call(&runtime, ctx, &input);
            (outcome, input)
        })
        .await;
    }
    let slow = now_ms() < active.slow_until_ms.load(Ordering::Relaxed);
    let marker = active.clone();
    let shop = ctx.shop.clone();
    let mut call = Box::pin(async move {
        let outcome = active.plugin.call_async(&runtime, ctx, &input).await;
        (outcome, input)
    });
    if !slow {
        // The call runs here until it is done or has used its inline
        // budget of CPU time. CPU, not wall-clock: a fast call whose thread
        // was preempted, or that straddles an epoch tick, is not slow.
        // (All polls below run within this one poll of the request task,
        // so on one thread.)
        let started = thread_cpu_time();
        loop {
            if let Poll::Ready(done) = poll_once(call.as_mut()).await {
                return Ok(done);
            }
            if thread_cpu_time().saturating_sub(started) >= INLINE_BUDGET {
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
        .map_err(|e| ApiError::Storage(format!("plugin task failed: {e}")))
}

/// The thread that finishes slow calls. It runs in the idle scheduling
/// class, so whenever a fast call of any shop is ready it gets the core at
/// once instead of waiting out a slow plugin's time slice; slow calls share
/// what is left, yielding to each other at every epoch tick. On a busy
/// host a slow plugin therefore gets little CPU and may reach its
/// wall-clock timeout sooner: the price of keeping the fast ones fast.
fn slow_lane() -> &'static tokio::runtime::Handle {
    static LANE: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    LANE.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            // One core at most for all slow calls together.
            .worker_threads(1)
            .thread_name("kefu-slow")
            .on_thread_start(lower_priority)
            .build()
            .expect("start the slow-call threads")
    })
    .handle()
}

/// Put the calling thread in Linux's idle scheduling class: it runs when a
/// core has nothing else to do, and any other thread that wakes up takes
/// the core from it at once. (A nice value does not do this: a nice-19
/// thread still holds the core for its slice, and shop B's p99 with a
/// looping neighbour stayed at 5-6 ms, as with no change at all.)
#[cfg(target_os = "linux")]
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on the calling thread (pid 0); on Linux
    // the scheduling policy is per thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(
            "cannot move a slow-call thread to the idle class: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// CPU time the calling thread has used.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Elsewhere, wall-clock time since first use (a preempted fast call may
/// then be counted as slow).
#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed()
}

/// Poll `fut` once with the current task's waker.
async fn poll_once<F: Future + Unpin>(mut fut: F) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx))).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Storage(format!("plugin task failed: {e}")))
}
