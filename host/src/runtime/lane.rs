//! The compile lane: compiling a component (a deploy by API or file, a
//! start) never competes with serving at equal priority, at most
//! [`SLOTS`] compiles at once (more wait their turn, counted).
//!
//! `kefu serve` compiles in a worker process (`kefu __compile`) of Linux's
//! idle scheduling class: it shares no locks with the server (an idle
//! thread of the server's own process could be preempted while holding
//! the address-space lock the serving threads fault through: p99 40-80 ms
//! beside a deploy, against 11 ms with a worker process; docs/perf-
//! history.md), and the server loads the artifact it writes. Without an
//! executable (tests, tools), compiles run in this process on idle-class
//! threads.
//!
//! A worker compiles on every core when the server is idle, and on one
//! thread while it serves ([`worker_threads`]): a second compile thread,
//! idle class or not, still costs the serving threads on two cores their
//! caches and a preemption at each wake-up.

use super::functions::FunctionCache;
use crate::error::LoadError;
use crate::runtime::Limits;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Compiles running at once; more queue.
pub const SLOTS: usize = 2;

/// How long the server's CPU use is looked at before a worker starts.
const LOOK: Duration = Duration::from_millis(100);

/// Above this share of one core used over [`LOOK`], the server is serving.
const SERVING: f64 = 0.25;

/// Put the calling thread in Linux's idle scheduling class: it runs when a
/// core has nothing else to do, and any other thread that wakes up takes
/// the core from it at once. (A nice value does not do this: a nice-19
/// thread still holds the core for its slice.) Returns whether it worked.
#[cfg(target_os = "linux")]
pub fn idle_priority() -> bool {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on the calling thread (pid 0); on Linux
    // the scheduling policy is per thread.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(
            "cannot move a thread to the idle class: {}",
            std::io::Error::last_os_error()
        );
    }
    rc == 0
}

#[cfg(not(target_os = "linux"))]
pub fn idle_priority() -> bool {
    false
}

/// Give wasmtime's parallel compile workers (rayon's global pool, used by
/// nothing else in kefu) idle-class threads, once per process. If the pool
/// was built before (another runtime in this process did it), it stays.
fn idle_workers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let built = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kefu-compile-{i}"))
            .start_handler(|_| {
                idle_priority();
            })
            .build_global();
        if let Err(e) = built {
            tracing::warn!(error = %e, "compile workers keep their priority");
        }
    });
}

/// How to start a compile worker: this executable, and the limits its
/// engine must be built with (the artifact is only loadable by an
/// engine configured alike, which loading checks).
#[derive(Clone, Debug)]
pub struct Worker {
    pub exe: PathBuf,
    pub limits: Limits,
    /// The compiled-function cache the worker's engine reads and fills.
    pub functions: Option<PathBuf>,
}

/// The hidden subcommand a worker runs.
pub const WORKER_ARG: &str = "__compile";

/// How a worker's stderr starts after a compile: then the functions found
/// in the cache and the functions compiled and stored.
const STATS: &str = "kefu-functions";

/// A worker argument that names no folder or file.
const NONE: &str = "-";

/// A worker's main: limits (JSON) as the argument after
/// [`WORKER_ARG`], then the compiled-function cache's folder and the
/// file to write the artifact to ([`NONE`] for no cache, for stdout); the
/// component on stdin; how many functions came from the cache on stderr
/// ([`STATS`]); an error on stderr and exit code 1.
pub fn compile_worker_main(
    limits_json: &str,
    functions: Option<&str>,
    out: Option<&str>,
) -> std::process::ExitCode {
    let functions = functions.filter(|f| *f != NONE);
    let out = out.filter(|o| *o != NONE);
    // Before any thread exists: every thread started later (wasmtime's
    // parallel workers) inherits the idle class.
    idle_priority();
    let run = || -> Result<(Vec<u8>, u64, u64), String> {
        let limits: Limits = serde_json::from_str(limits_json).map_err(|e| e.to_string())?;
        let cache = functions.map(|dir| Arc::new(FunctionCache::new(PathBuf::from(dir))));
        let engine = super::engine::build(&limits, cache.clone()).map_err(|e| e.to_string())?;
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| e.to_string())?;
        let artifact = engine
            .precompile_component(&bytes)
            .map_err(|e| format!("{e:#}"))?;
        let (hits, stored) = cache.map_or((0, 0), |c| c.counts());
        Ok((artifact, hits, stored))
    };
    let (artifact, hits, stored) = match run() {
        Ok(compiled) => compiled,
        Err(e) => {
            eprint!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Exit code 2: compiled, but the artifact could not be handed over.
    let handed = match out {
        Some(path) => {
            crate::files::write_paced(Path::new(path), &artifact, crate::files::Keep::Cache)
                .map_err(|e| format!("cannot write {path}: {e}"))
        }
        None => std::io::stdout()
            .write_all(&artifact)
            .map_err(|e| format!("cannot write the artifact to stdout: {e}")),
    };
    match handed {
        Ok(()) => {
            eprint!("{STATS} {hits} {stored}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Bounded, counted compiles.
pub struct Lane {
    running: Mutex<usize>,
    freed: Condvar,
    queued: AtomicUsize,
    worker: Option<Worker>,
    /// The cache in-process compiles use, to count what it saved.
    functions: Option<Arc<FunctionCache>>,
}

/// What a worker process came back with.
enum Outcome {
    /// Compiled: with the functions found in the cache and compiled.
    Compiled(Component, u64, u64),
    /// The component is invalid: the worker's message.
    Refused(String),
    /// The worker could not be used (not started, killed, another
    /// engine): compile here instead.
    Unusable(String),
}

impl Lane {
    pub fn new(worker: Option<Worker>, functions: Option<Arc<FunctionCache>>) -> Self {
        Lane {
            running: Mutex::new(0),
            freed: Condvar::new(),
            queued: AtomicUsize::new(0),
            worker,
            functions,
        }
    }

    /// Compile `bytes` in the lane, and keep the artifact at `artifact`
    /// if given.
    pub fn compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        artifact: Option<&Path>,
    ) -> Result<Component, LoadError> {
        self.run(|| {
            if let Some(worker) = &self.worker {
                match in_worker(worker, engine, bytes, artifact) {
                    Outcome::Compiled(component, hits, stored) => {
                        count_functions(hits, stored);
                        return Ok(component);
                    }
                    Outcome::Refused(message) => return Err(LoadError::Invalid(message)),
                    Outcome::Unusable(why) => {
                        tracing::warn!(%why, "compile worker unusable; compiling in process");
                    }
                }
            }
            idle_workers();
            let before = self.functions.as_ref().map_or((0, 0), |f| f.counts());
            let compiled = std::thread::scope(|s| {
                std::thread::Builder::new()
                    .name("kefu-compile".into())
                    // As much stack as a main thread: compiling big
                    // components (Python, JavaScript) recurses deeply.
                    .stack_size(8 << 20)
                    .spawn_scoped(s, || {
                        idle_priority();
                        Component::new(engine, bytes)
                    })
                    .expect("spawn a compile thread")
                    .join()
            })
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            .map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
            // Other compiles of this process may have counted meanwhile:
            // what the metric adds up is right, the log line's share close.
            let after = self.functions.as_ref().map_or((0, 0), |f| f.counts());
            count_functions(after.0 - before.0, after.1 - before.1);
            if let Some(path) = artifact {
                super::artifact::store(&compiled, path);
            }
            Ok(compiled)
        })
    }

    /// Compiles running now and waiting for a slot.
    pub fn counts(&self) -> (usize, usize) {
        let running = *self.running.lock().unwrap_or_else(|e| e.into_inner());
        (running, self.queued.load(Ordering::Relaxed))
    }

    /// Run `compile` when a slot is free.
    fn run<T>(&self, compile: impl FnOnce() -> T) -> T {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.gauges();
        {
            let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
            while *running >= SLOTS {
                running = self.freed.wait(running).unwrap_or_else(|e| e.into_inner());
            }
            *running += 1;
        }
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.gauges();
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(compile));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        self.freed.notify_one();
        self.gauges();
        out.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn gauges(&self) {
        let (running, queued) = self.counts();
        metrics::gauge!("kefu_compiles", "state" => "running").set(running as f64);
        metrics::gauge!("kefu_compiles", "state" => "queued").set(queued as f64);
    }
}

/// Compile in a worker process and load what it wrote: the artifact file
/// `artifact` if given, else its stdout.
fn in_worker(worker: &Worker, engine: &Engine, bytes: &[u8], artifact: Option<&Path>) -> Outcome {
    use std::process::{Command, Stdio};
    let limits = match serde_json::to_string(&worker.limits) {
        Ok(l) => l,
        Err(e) => return Outcome::Unusable(e.to_string()),
    };
    let threads = worker_threads();
    let mut command = Command::new(&worker.exe);
    command
        // wasmtime compiles in parallel on rayon's global pool, which
        // takes its size from here.
        .env("RAYON_NUM_THREADS", threads.to_string())
        .args([WORKER_ARG, &limits])
        .arg(worker.functions.as_deref().unwrap_or(Path::new(NONE)))
        .arg(artifact.unwrap_or(Path::new(NONE)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only a plain system call runs
        // (async-signal-safe, no allocation): the worker is in the idle
        // class from its first instruction.
        unsafe {
            command.pre_exec(|| {
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
                Ok(())
            });
        }
    }
    let child = command.spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Outcome::Unusable(format!("cannot start {}: {e}", worker.exe.display())),
    };
    let mut stdin = child.stdin.take().expect("piped");
    // Write on a thread of its own: the worker may fill its stdout pipe
    // before it has read all of its input.
    let output = std::thread::scope(|s| {
        s.spawn(move || {
            let _ = stdin.write_all(bytes);
        });
        child.wait_with_output()
    });
    let output = match output {
        Ok(output) => output,
        Err(e) => return Outcome::Unusable(e.to_string()),
    };
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stderr).into_owned();
        return if output.status.code() == Some(1) && !message.is_empty() {
            Outcome::Refused(message)
        } else {
            Outcome::Unusable(format!("worker ended with {}: {message}", output.status))
        };
    }
    let stats = String::from_utf8_lossy(&output.stderr);
    let mut counts = stats
        .strip_prefix(STATS)
        .unwrap_or_default()
        .split_whitespace()
        .map(|n| n.parse::<u64>().unwrap_or(0));
    let (hits, stored) = (counts.next().unwrap_or(0), counts.next().unwrap_or(0));
    tracing::debug!(threads, "compile worker done");
    if let Some(path) = artifact {
        return match super::artifact::load(engine, path) {
            Some(component) => Outcome::Compiled(component, hits, stored),
            None => Outcome::Unusable(format!(
                "cannot load the worker's artifact {}",
                path.display()
            )),
        };
    }
    // SAFETY: the artifact was just written by this same executable's
    // worker from the component given to it, never by a client; wasmtime
    // checks that it was compiled for an engine configured like ours.
    match unsafe { Component::deserialize(engine, &output.stdout) } {
        Ok(component) => Outcome::Compiled(component, hits, stored),
        Err(e) => Outcome::Unusable(format!("cannot load the worker's artifact: {e:#}")),
    }
}

/// Compile threads for a worker started now: one while this process is
/// serving, every core when it is idle. In memory, tea-oil's p99 beside
/// a Python and a JavaScript deploy was 1.30, 0.84 and 1.07x its baseline
/// with one thread against 1.57, 0.90 and 1.58x with two (three pairs,
/// docs/PERFORMANCE.md); on a quiet node one thread takes 2.4x as long.
fn worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    share_of_a_core(LOOK).map_or(cores, |share| threads_for(share, cores))
}

/// The policy of [`worker_threads`]: `share` of one core used, `cores`.
fn threads_for(share: f64, cores: usize) -> usize {
    if share > SERVING { 1 } else { cores.max(1) }
}

/// The share of one core this process used over `look` (the calling
/// thread sleeps through it), or `None` where it cannot be read.
fn share_of_a_core(look: Duration) -> Option<f64> {
    let before = super::cpu::process_cpu_time()?;
    let start = Instant::now();
    std::thread::sleep(look);
    let used = super::cpu::process_cpu_time()?.saturating_sub(before);
    Some(used.as_secs_f64() / start.elapsed().as_secs_f64())
}

/// Count a compile's functions: found in the cache, and compiled.
fn count_functions(hits: u64, stored: u64) {
    if hits + stored > 0 {
        tracing::info!(from_cache = hits, compiled = stored, "component compiled");
    }
    metrics::counter!("kefu_compiled_functions_total", "from" => "cache").increment(hits);
    metrics::counter!("kefu_compiled_functions_total", "from" => "compiler").increment(stored);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_serving_process_compiles_on_one_thread_an_idle_one_on_every_core() {
        assert_eq!(threads_for(0.0, 2), 2);
        assert_eq!(threads_for(SERVING, 2), 2);
        assert_eq!(threads_for(0.6, 2), 1);
        assert_eq!(threads_for(1.8, 8), 1);
        assert_eq!(threads_for(0.0, 0), 1);
    }

    #[test]
    fn a_thread_at_work_counts_in_the_process_share_of_a_core() {
        let stop = Arc::new(AtomicBool::new(false));
        let spin = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        };
        let share = share_of_a_core(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        spin.join().unwrap();
        let share = share.expect("the process's CPU time reads on Linux");
        assert!(
            share > SERVING,
            "a spinning thread counted {share:.2} of a core"
        );
        assert_eq!(threads_for(share, 2), 1);
    }
}
