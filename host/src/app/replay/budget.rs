//! The CPU budget of a thread that works beside the live traffic (a
//! shadow, a replay job): a share of one core, counted over a short
//! [`PERIOD`], kept by sleeping — between calls, and through a paced call
//! at every epoch tick of a long one.
//!
//! Such a thread runs at the serving threads' priority, not in the idle
//! class: an idle-class thread descheduled inside the kernel while it
//! holds the process's address-space lock (a fresh instance maps and
//! protects memory on every call) stalls every serving thread that faults
//! or maps until a core is idle again — measured as single windows at
//! 20–35× the live p99 with a shadow, 4–13× with replay jobs, none without
//! (docs/perf-history.md, "A shadow beside the live traffic").

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The span a budget is counted over: short, so that the thread never runs
/// for long at a stretch.
pub const PERIOD: Duration = Duration::from_millis(10);

thread_local! {
    /// This thread's budget, started at its first spend.
    static BUDGET: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// Sleep off what the calling thread used past `share` of a core in this
/// period; how long it slept.
pub fn spend(share: f64) -> Duration {
    BUDGET.with(|b| {
        let mut budget = b.get().unwrap_or_else(Budget::new);
        let slept = budget.spend(share);
        b.set(Some(budget));
        slept
    })
}

#[derive(Clone, Copy)]
struct Budget {
    wall: Instant,
    cpu: Duration,
}

impl Budget {
    fn new() -> Self {
        Budget {
            wall: Instant::now(),
            cpu: crate::runtime::thread_cpu_time(),
        }
    }

    /// Sleep off what was used past the budget, starting a new period
    /// when one has passed; how long it slept.
    fn spend(&mut self, share: f64) -> Duration {
        let used = crate::runtime::thread_cpu_time().saturating_sub(self.cpu);
        let allowed = self.wall.elapsed().mul_f64(share);
        let slept = if used > allowed {
            let asleep = Instant::now();
            std::thread::sleep((used - allowed).div_f64(share));
            asleep.elapsed()
        } else {
            Duration::ZERO
        };
        if self.wall.elapsed() >= PERIOD {
            *self = Budget::new();
        }
        slept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The share of a core a thread busy in 50 µs slices (as calls of a
    /// small plugin) used over 400 ms, spending `share` between slices.
    fn used(share: f64) -> f64 {
        std::thread::spawn(move || {
            let (cpu, wall) = (crate::runtime::thread_cpu_time(), Instant::now());
            while wall.elapsed() < Duration::from_millis(400) {
                let slice = crate::runtime::thread_cpu_time();
                while crate::runtime::thread_cpu_time() - slice < Duration::from_micros(50) {}
                _ = spend(share);
            }
            (crate::runtime::thread_cpu_time() - cpu).as_secs_f64() / wall.elapsed().as_secs_f64()
        })
        .join()
        .expect("the busy thread")
    }

    #[test]
    fn a_budget_holds_a_busy_thread_to_its_share_of_a_core() {
        // Unbudgeted it would use the whole 400 ms (less whatever the
        // machine took from it); held, about its share.
        for share in [0.15, 0.5] {
            let used = used(share);
            assert!(used < share * 1.5, "{share}: used {used:.2} of a core");
            assert!(used > 0.0);
        }
    }
}
