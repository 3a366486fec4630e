//! Where a plugin call runs. Most calls take tens of microseconds: they
//! run right on the request's async task, with no hand-off to another
//! thread. A call that is still running after its inline budget, and
//! every call of its plugin version for a while after, is finished on the
//! blocking pool, so slow plugins never hold the async threads that every
//! other shop's requests need. Steps that reuse instances (Python, JS) run
//! on the blocking pool always.

use super::error::ApiError;
use super::shops::{ActivePlugin, now_ms};
use crate::runtime::{CallContext, CallOutcome, Runtime};
use crate::step::StepInput;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant};

/// How long a plugin version that was slow once runs off the async
/// threads before it is tried inline again.
pub const SLOW_FOR_MS: i64 = 10_000;

/// How long a call may run on the async threads before it moves to the
/// blocking pool. It is checked at epoch ticks, so a call holds an async
/// thread for at most this plus one tick.
pub const INLINE_BUDGET: Duration = Duration::from_millis(1);

/// Run one call of `active` on `input`; the input comes back with the
/// outcome.
pub async fn call(
    runtime: Arc<Runtime>,
    active: Arc<ActivePlugin>,
    ctx: CallContext,
    input: StepInput,
) -> Result<(CallOutcome, StepInput), ApiError> {
    let slow = now_ms() < active.slow_until_ms.load(Ordering::Relaxed);
    if active.pool.is_some() || slow {
        return blocking(move || {
            let outcome = active.call(&runtime, ctx, &input);
            (outcome, input)
        })
        .await;
    }
    let marker = active.clone();
    let mut call = Box::pin(async move {
        let outcome = active.plugin.call_async(&runtime, ctx, &input).await;
        (outcome, input)
    });
    // The call runs here until it is done or has used its inline budget;
    // a fast call that merely straddles an epoch tick is polled again.
    let started = Instant::now();
    loop {
        if let Poll::Ready(done) = poll_once(call.as_mut()).await {
            return Ok(done);
        }
        if started.elapsed() >= INLINE_BUDGET {
            break;
        }
    }
    marker
        .slow_until_ms
        .store(now_ms() + SLOW_FOR_MS, Ordering::Relaxed);
    metrics::counter!("kefu_calls_offloaded_total").increment(1);
    let handle = tokio::runtime::Handle::current();
    blocking(move || handle.block_on(call)).await
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
