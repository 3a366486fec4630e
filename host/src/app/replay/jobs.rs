//! Replays started through the admin API: each on a thread of its own,
//! held to half a core (`budget`), one at a time (the others wait their
//! turn, their progress at 0), with its progress, report and examples
//! kept in memory for the latest [`KEPT`] replays.

use super::{Outcome, Progress, ReplayError, ReplayExample, ReplayReport};
use crate::steps::Step;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Replays kept (the oldest finished ones go first).
pub const KEPT: usize = 20;

/// A replay job's CPU budget beside the live traffic: half a core (see
/// `budget`). A report is waited for, so more than a shadow's share.
pub const CPU_SHARE: f64 = 0.5;

/// Sleep off what a replay job's thread used past [`CPU_SHARE`].
pub fn spend() -> std::time::Duration {
    super::budget::spend(CPU_SHARE)
}

/// Every replay started since the server started.
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<BTreeMap<u64, Arc<Job>>>,
    /// Held by the replay running now: one at a time, so that replays
    /// started together take [`CPU_SHARE`] of a core between them, not
    /// each.
    turn: Arc<Mutex<()>>,
}

/// One replay.
pub struct Job {
    pub id: u64,
    pub shop: String,
    pub step: Step,
    pub candidate: String,
    pub started_at_ms: i64,
    pub progress: Progress,
    state: Mutex<State>,
}

enum State {
    Running,
    Done(Arc<Outcome>),
    Failed(String),
}

/// A replay as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobView {
    pub id: u64,
    pub shop: String,
    #[schema(value_type = String)]
    pub step: Step,
    pub candidate: String,
    /// `running`, `done` or `failed`.
    pub status: &'static str,
    pub started_at_ms: i64,
    /// Decisions replayed so far, of `total`.
    pub done: u64,
    pub total: u64,
    pub error: Option<String>,
    /// Once done.
    pub report: Option<ReplayReport>,
}

impl Job {
    pub fn view(&self) -> JobView {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (status, error, report) = match &*state {
            State::Running => ("running", None, None),
            State::Done(outcome) => ("done", None, Some(outcome.report.clone())),
            State::Failed(e) => ("failed", Some(e.clone()), None),
        };
        JobView {
            id: self.id,
            shop: self.shop.clone(),
            step: self.step,
            candidate: self.candidate.clone(),
            status,
            started_at_ms: self.started_at_ms,
            done: self.progress.done.load(Ordering::Relaxed),
            total: self.progress.total.load(Ordering::Relaxed),
            error,
            report,
        }
    }

    /// One example of the finished replay, side by side.
    pub fn example(&self, decision: u64) -> Option<ReplayExample> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Done(outcome) => outcome.examples.get(&decision).cloned(),
            _ => None,
        }
    }
}

impl Jobs {
    /// Start `work` on a new thread (held to [`CPU_SHARE`] if it paces
    /// itself with [`spend`]); `finished` runs after it with what it came
    /// to.
    pub fn start(
        &self,
        shop: &str,
        step: Step,
        candidate: String,
        work: impl FnOnce(&Progress) -> Result<Outcome, ReplayError> + Send + 'static,
        finished: impl FnOnce(&Job) + Send + 'static,
    ) -> std::io::Result<Arc<Job>> {
        let job = Arc::new(Job {
            id: self.next.fetch_add(1, Ordering::Relaxed) + 1,
            shop: shop.to_string(),
            step,
            candidate,
            started_at_ms: crate::app::now_ms(),
            progress: Progress::default(),
            state: Mutex::new(State::Running),
        });
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
            while jobs.len() >= KEPT {
                let Some(oldest) = jobs
                    .iter()
                    .find(|(_, j)| !matches!(*j.state.lock().unwrap(), State::Running))
                    .map(|(id, _)| *id)
                else {
                    break;
                };
                jobs.remove(&oldest);
            }
            jobs.insert(job.id, job.clone());
        }
        let (running, turn) = (job.clone(), self.turn.clone());
        std::thread::Builder::new()
            .name(format!("kefu-replay-{}", job.id))
            .spawn(move || {
                // With the slow lane, on one core (see `placement`).
                crate::app::placement::pin_to_first_core();
                let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
                let state = match work(&running.progress) {
                    Ok(outcome) => State::Done(Arc::new(outcome)),
                    Err(e) => State::Failed(e.to_string()),
                };
                *running.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
                finished(&running);
            })?;
        Ok(job)
    }

    /// The kept replays of `shop`'s `step`, newest first.
    pub fn of(&self, shop: &str, step: Step) -> Vec<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.values()
            .rev()
            .filter(|j| j.shop == shop && j.step == step)
            .cloned()
            .collect()
    }

    /// Replay `id` of `shop`'s `step`, if kept.
    pub fn get(&self, shop: &str, step: Step, id: u64) -> Option<Arc<Job>> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.get(&id)
            .filter(|j| j.shop == shop && j.step == step)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{RecvTimeoutError, channel};
    use std::time::Duration;

    #[test]
    fn replays_started_together_run_one_at_a_time() {
        let jobs = Jobs::default();
        let (started, starts) = channel::<usize>();
        let mut releases = Vec::new();
        for i in 0..2 {
            let (release, held) = channel::<()>();
            releases.push(release);
            let started = started.clone();
            jobs.start(
                "tea",
                Step::RefundPolicy,
                i.to_string(),
                move |_| {
                    started.send(i).ok();
                    held.recv().ok();
                    Err(ReplayError::Cancelled)
                },
                |_| {},
            )
            .unwrap();
        }
        // Whichever got its turn first runs alone...
        let first = starts.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            starts.recv_timeout(Duration::from_millis(300)),
            Err(RecvTimeoutError::Timeout)
        );
        // ...and the other runs once it is done.
        releases[first].send(()).unwrap();
        let second = starts.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_ne!(first, second);
        releases[second].send(()).unwrap();
    }
}
